-- Tamma event store, schema version 2: named consumer cursors (routes, forwarders), kept next to the events
-- they point into so a consumer resumes where it stopped, whichever process it runs in.

CREATE TABLE tamma_cursors (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
