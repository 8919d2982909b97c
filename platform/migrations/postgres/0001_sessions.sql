-- Agent sessions: the serialised state machine, one row per session. The state is opaque JSON
-- text (not JSONB, which refuses the \u0000 escape a user's text may carry).
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    phase      TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, updated_ms);
