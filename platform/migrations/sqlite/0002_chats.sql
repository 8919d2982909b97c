-- Chat sessions of the WebSocket protocol: who they belong to and which brief (agent session)
-- they are working on, so a restarted server can pick them up.
CREATE TABLE chats (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT NOT NULL,
    brand         TEXT,
    brief_session TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
