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

-- The lowest position in (p_after, p_below) of an event matching one query item (any of p_types, or any
-- type when empty; all of p_tags), or NULL.
--
-- The item is an intersection of ordered streams: one per tag (the (tag, position) B-tree) and one for the
-- types (the (type, position) B-tree). A leapfrog join seeks each stream in turn to the current candidate
-- position and jumps the candidate forward to where that stream continues, until every stream agrees. Its
-- cost follows the rarest stream (a rare type with a common tag, or the reverse, costs a few index seeks),
-- never the number of events carrying the common one.
CREATE FUNCTION tamma_item_first(p_after bigint, p_types text[], p_tags text[], p_below bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ntags   int := coalesce(cardinality(p_tags), 0);
    v_ntypes  int := coalesce(cardinality(p_types), 0);
    v_streams int := v_ntags + CASE WHEN v_ntypes > 0 THEN 1 ELSE 0 END;
    v_cand    bigint := p_after + 1;
    v_pos     bigint;
    v_p       bigint;
    v_agree   int := 0;
    v_i       int := 0;
    v_t       int;
BEGIN
    WHILE v_agree < v_streams LOOP
        v_pos := NULL;
        IF v_i < v_ntags THEN
            SELECT t.position INTO v_pos FROM tamma_event_tags t
             WHERE t.tag = p_tags[v_i + 1] AND t.position >= v_cand AND t.position < p_below
             ORDER BY t.position LIMIT 1;
        ELSE
            FOR v_t IN 1 .. v_ntypes LOOP
                SELECT e.position INTO v_p FROM tamma_events e
                 WHERE e.type = p_types[v_t] AND e.position >= v_cand
                   AND e.position < coalesce(v_pos, p_below)
                 ORDER BY e.position LIMIT 1;
                IF FOUND THEN
                    v_pos := v_p;
                END IF;
            END LOOP;
        END IF;
        IF v_pos IS NULL THEN
            RETURN NULL;
        END IF;
        IF v_pos = v_cand THEN
            v_agree := v_agree + 1;
        ELSE
            v_cand := v_pos;
            v_agree := 1;
        END IF;
        v_i := (v_i + 1) % v_streams;
    END LOOP;
    RETURN v_cand;
END
$$;

-- Appends a batch of appends in one transaction (group commit). Takes the append lock, reads the head,
-- then for each append in order: if any of its ids is stored, writes nothing and returns the stored rows
-- (status 2: the caller decides idempotent retry or duplicate id); else if its condition matches an event
-- (including events of earlier appends of this batch), writes nothing (status 1, the first matching
-- position); else writes it at head+1… (status 0, its first position). Notifies `tamma_events` with the new
-- head when anything was written. The lock is released when the transaction ends, after its commit.
--
-- Everything is passed as flat arrays, so the function parses nothing:
-- - per append: p_counts (events), p_after (NULL = no condition, else the condition's `after`, 0 when
--   absent), p_items (the condition's number of query items; 0 = the empty query, every event);
-- - per query item: p_item_ntypes, p_item_ntags, over the flat p_item_types and p_item_tags;
-- - per event: p_ids, p_types, p_ts (NULL = now), p_tag_start (offset of its first tag in p_tags),
--   p_tag_counts, p_meta (jsonb text or NULL), p_data (json text).
-- The caller never puts one id in two appends of a batch.
CREATE FUNCTION tamma_append(
    p_counts       int[],
    p_after        bigint[],
    p_items        int[],
    p_item_ntypes  int[],
    p_item_ntags   int[],
    p_item_types   text[],
    p_item_tags    text[],
    p_ids          uuid[],
    p_types        text[],
    p_ts           timestamptz[],
    p_tag_start    int[],
    p_tag_counts   int[],
    p_tags         text[],
    p_meta         text[],
    p_data         text[]
) RETURNS TABLE (o_status smallint, o_first bigint, o_conflict bigint, o_found json)
LANGUAGE plpgsql AS $$
DECLARE
    v_head     bigint;
    v_rec      timestamptz;
    v_now      timestamptz;
    v_stored   uuid[];
    v_ev       int := 0;
    v_item     int := 0;
    v_ity      int := 0;
    v_itg      int := 0;
    v_n        int;
    v_conflict bigint;
    v_pos      bigint;
    v_wrote    boolean := false;
    a          int;
    k          int;
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
    -- Ids of the batch already stored (almost always none): one index probe per id, once per batch.
    SELECT array_agg(e.id) INTO v_stored FROM tamma_events e WHERE e.id = ANY (p_ids);
    FOR a IN 1 .. coalesce(array_length(p_counts, 1), 0) LOOP
        v_n := p_counts[a];
        o_status := NULL; o_first := NULL; o_conflict := NULL; o_found := NULL;
        v_conflict := NULL;
        IF p_after[a] IS NOT NULL THEN
            IF p_items[a] = 0 THEN
                SELECT e.position INTO v_conflict FROM tamma_events e
                 WHERE e.position > p_after[a] ORDER BY e.position LIMIT 1;
            ELSIF p_after[a] < 9223372036854775807 THEN
                FOR k IN 1 .. p_items[a] LOOP
                    v_pos := tamma_item_first(
                        p_after[a],
                        p_item_types[v_ity + 1 : v_ity + p_item_ntypes[v_item + k]],
                        p_item_tags[v_itg + 1 : v_itg + p_item_ntags[v_item + k]],
                        coalesce(v_conflict, 9223372036854775807));
                    IF v_pos IS NOT NULL THEN
                        v_conflict := v_pos;
                    END IF;
                    v_ity := v_ity + p_item_ntypes[v_item + k];
                    v_itg := v_itg + p_item_ntags[v_item + k];
                END LOOP;
            ELSE
                FOR k IN 1 .. p_items[a] LOOP
                    v_ity := v_ity + p_item_ntypes[v_item + k];
                    v_itg := v_itg + p_item_ntags[v_item + k];
                END LOOP;
            END IF;
            v_item := v_item + p_items[a];
        END IF;
        IF v_stored IS NOT NULL AND v_stored && p_ids[v_ev + 1 : v_ev + v_n] THEN
            -- Stored ids decide before the condition: a retry is not re-checked.
            o_status := 2;
            SELECT json_agg(json_build_object(
                       'position', e.position, 'id', e.id, 'type', e.type,
                       'timestamp', (extract(epoch FROM e.timestamp) * 1000000)::bigint,
                       'tags', e.tags, 'metadata', e.metadata, 'data', e.data))
              INTO o_found
              FROM tamma_events e WHERE e.id = ANY (p_ids[v_ev + 1 : v_ev + v_n]);
        ELSIF v_conflict IS NOT NULL THEN
            o_status := 1;
            o_conflict := v_conflict;
        ELSE
            WITH ins AS (
                INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                SELECT v_head + i.ord, i.id, i.type, coalesce(i.ts, v_now), v_now,
                       p_tags[i.tag_start + 1 : i.tag_start + i.ntag], i.meta::jsonb, i.data::json
                  FROM unnest(p_ids[v_ev + 1 : v_ev + v_n], p_types[v_ev + 1 : v_ev + v_n],
                              p_ts[v_ev + 1 : v_ev + v_n], p_meta[v_ev + 1 : v_ev + v_n],
                              p_data[v_ev + 1 : v_ev + v_n], p_tag_start[v_ev + 1 : v_ev + v_n],
                              p_tag_counts[v_ev + 1 : v_ev + v_n])
                       WITH ORDINALITY AS i (id, type, ts, meta, data, tag_start, ntag, ord)
                RETURNING position, tags
            )
            INSERT INTO tamma_event_tags (tag, position)
            SELECT unnest(ins.tags), ins.position FROM ins;
            o_status := 0;
            o_first := v_head + 1;
            v_head := v_head + v_n;
            v_wrote := true;
        END IF;
        RETURN NEXT;
        v_ev := v_ev + v_n;
    END LOOP;
    IF v_wrote THEN
        PERFORM pg_notify('tamma_events', v_head::text);
    END IF;
    RETURN;
END
$$;
