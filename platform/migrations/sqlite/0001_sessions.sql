-- Agent sessions: the serialised state machine, one row per session.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL,
    phase      TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, updated_ms);
