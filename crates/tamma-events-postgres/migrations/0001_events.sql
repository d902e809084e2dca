-- Tamma event store, schema version 1.
--
-- Positions are assigned by tamma_append() under a transaction-scoped advisory lock, read after the lock
-- is held (READ COMMITTED: each statement of the function takes a fresh snapshot), so they are gapless and
-- in commit order across every process sharing the database.

CREATE TABLE tamma_events (
    position    bigint      PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    timestamp   timestamptz NOT NULL,
    -- Set under the append lock, never lower than the previous event's: non-decreasing in position.
    recorded_at timestamptz NOT NULL,
    -- The tags again, so a read needs no join; queries go through tamma_event_tags.
    tags        text[]      NOT NULL,
    -- NULL when empty.
    metadata    jsonb,
    -- `json`, not `jsonb`: the payload comes back exactly as sent (number spelling, `\u0000`, key order).
    data        json        NOT NULL
);

-- A type query is an ordered range scan of one type.
CREATE INDEX tamma_events_type_position ON tamma_events (type, position);
-- recorded_at grows with position, so a BRIN index finds the retention cutoff for almost nothing.
CREATE INDEX tamma_events_recorded_at ON tamma_events USING brin (recorded_at);

-- One row per (tag, event): a tag query is an ordered scan of only that tag's entries, stopping at its limit.
CREATE TABLE tamma_event_tags (
    tag      text   NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (tag, position)
);

-- One row: what retention removed, so the head never goes down when every event is removed.
CREATE TABLE tamma_events_state (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    removed_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO tamma_events_state DEFAULT VALUES;

-- The committed head.
CREATE FUNCTION tamma_head() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(coalesce((SELECT max(position) FROM tamma_events), 0),
                    (SELECT removed_through FROM tamma_events_state))
$$;

-- The lowest position above `after` of an event matching the condition's query, or NULL.
-- p_cond: {"after": n | null, "items": [{"types": [...], "tags": [...]}, ...]}; no items = every event.
CREATE FUNCTION tamma_first_match(p_cond jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_after bigint := coalesce((p_cond ->> 'after')::bigint, 0);
    v_best  bigint;
    v_pos   bigint;
    v_item  jsonb;
    v_type  text;
    v_types text[];
    v_tags  text[];
BEGIN
    IF jsonb_array_length(p_cond -> 'items') = 0 THEN
        SELECT e.position INTO v_best FROM tamma_events e
         WHERE e.position > v_after ORDER BY e.position LIMIT 1;
        RETURN v_best;
    END IF;
    FOR v_item IN SELECT jsonb_array_elements(p_cond -> 'items') LOOP
        v_types := ARRAY(SELECT jsonb_array_elements_text(coalesce(v_item -> 'types', '[]')));
        v_tags := ARRAY(SELECT jsonb_array_elements_text(coalesce(v_item -> 'tags', '[]')));
        IF cardinality(v_tags) > 0 THEN
            -- Walk the first tag's entries in order; the event row checks the other tags and the types.
            SELECT t.position INTO v_pos
              FROM tamma_event_tags t JOIN tamma_events e ON e.position = t.position
             WHERE t.tag = v_tags[1] AND t.position > v_after
               AND t.position < coalesce(v_best, 9223372036854775807)
               AND e.tags @> v_tags
               AND (cardinality(v_types) = 0 OR e.type = ANY (v_types))
             ORDER BY t.position LIMIT 1;
            IF FOUND THEN
                v_best := v_pos;
            END IF;
        ELSE
            FOREACH v_type IN ARRAY v_types LOOP
                SELECT e.position INTO v_pos FROM tamma_events e
                 WHERE e.type = v_type AND e.position > v_after
                   AND e.position < coalesce(v_best, 9223372036854775807)
                 ORDER BY e.position LIMIT 1;
                IF FOUND THEN
                    v_best := v_pos;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN v_best;
END
$$;

-- Appends a batch of appends in one transaction (group commit). Takes the append lock, reads the head,
-- then for each append in order: if any of its ids is stored, writes nothing and returns the stored rows
-- (status 2: the caller decides idempotent retry or duplicate id); else if its condition matches an event
-- (including events of earlier appends of this batch), writes nothing (status 1, the first matching
-- position); else writes it at head+1… (status 0, its first position). Notifies `tamma_events` with the new
-- head when anything was written. The lock is released when the transaction ends, after its commit.
--
-- Arrays are flat over the batch's events; p_counts gives each append's number of events, p_tag_counts
-- each event's number of tags within the flat p_tags.
CREATE FUNCTION tamma_append(
    p_counts     int[],
    p_conds      text[],
    p_ids        uuid[],
    p_types      text[],
    p_ts         timestamptz[],
    p_tag_counts int[],
    p_tags       text[],
    p_meta       text[],
    p_data       text[]
) RETURNS TABLE (o_status smallint, o_first bigint, o_conflict bigint, o_found json)
LANGUAGE plpgsql AS $$
DECLARE
    v_head     bigint;
    v_rec      timestamptz;
    v_now      timestamptz;
    v_ev       int := 0;
    v_tag      int := 0;
    v_n        int;
    v_ntags    int;
    v_conflict bigint;
    v_wrote    boolean := false;
    a          int;
BEGIN
    PERFORM pg_advisory_xact_lock(6071218766870478849);
    -- Read after the lock: this statement's snapshot includes the previous holder's commit.
    SELECT e.position, e.recorded_at INTO v_head, v_rec
      FROM tamma_events e ORDER BY e.position DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT s.removed_through INTO v_head FROM tamma_events_state s;
        v_head := coalesce(v_head, 0);
    END IF;
    v_now := greatest(clock_timestamp(), v_rec);
    FOR a IN 1 .. coalesce(array_length(p_counts, 1), 0) LOOP
        v_n := p_counts[a];
        SELECT coalesce(sum(c), 0) INTO v_ntags FROM unnest(p_tag_counts[v_ev + 1 : v_ev + v_n]) c;
        o_status := NULL; o_first := NULL; o_conflict := NULL; o_found := NULL;
        IF EXISTS (SELECT 1 FROM tamma_events e WHERE e.id = ANY (p_ids[v_ev + 1 : v_ev + v_n])) THEN
            o_status := 2;
            SELECT json_agg(json_build_object(
                       'position', e.position, 'id', e.id, 'type', e.type,
                       'timestamp', (extract(epoch FROM e.timestamp) * 1000000)::bigint,
                       'tags', e.tags, 'metadata', e.metadata, 'data', e.data))
              INTO o_found
              FROM tamma_events e WHERE e.id = ANY (p_ids[v_ev + 1 : v_ev + v_n]);
        ELSE
            v_conflict := CASE WHEN p_conds[a] IS NULL THEN NULL
                               ELSE tamma_first_match(p_conds[a]::jsonb) END;
            IF v_conflict IS NOT NULL THEN
                o_status := 1;
                o_conflict := v_conflict;
            ELSE
                WITH src AS (
                    SELECT i.ord, i.id, i.type, i.ts, i.meta, i.data, i.ntag,
                           sum(i.ntag) OVER (ORDER BY i.ord) - i.ntag AS tag_off
                      FROM unnest(p_ids[v_ev + 1 : v_ev + v_n], p_types[v_ev + 1 : v_ev + v_n],
                                  p_ts[v_ev + 1 : v_ev + v_n], p_meta[v_ev + 1 : v_ev + v_n],
                                  p_data[v_ev + 1 : v_ev + v_n], p_tag_counts[v_ev + 1 : v_ev + v_n])
                           WITH ORDINALITY AS i (id, type, ts, meta, data, ntag, ord)
                ), ins AS (
                    INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                    SELECT v_head + s.ord, s.id, s.type, coalesce(s.ts, v_now), v_now,
                           p_tags[v_tag + s.tag_off + 1 : v_tag + s.tag_off + s.ntag],
                           s.meta::jsonb, s.data::json
                      FROM src s ORDER BY s.ord
                    RETURNING position, tags
                )
                INSERT INTO tamma_event_tags (tag, position)
                SELECT unnest(ins.tags), ins.position FROM ins;
                o_status := 0;
                o_first := v_head + 1;
                v_head := v_head + v_n;
                v_wrote := true;
            END IF;
        END IF;
        RETURN NEXT;
        v_ev := v_ev + v_n;
        v_tag := v_tag + v_ntags;
    END LOOP;
    IF v_wrote THEN
        PERFORM pg_notify('tamma_events', v_head::text);
    END IF;
    RETURN;
END
$$;
