-- Tamma event store, schema version 4: tags and types indexed by runs; large batches insert without a
-- per-row conflict check.
--
-- A run `(key, first, last)` says every event from `first` to `last` carries the tag (or has the type);
-- runs of one key never overlap. Events of one append that share a key take one run between them: an
-- append of 100 events of one type for one entity writes 3 run rows instead of 200 tag rows and 100
-- type-index entries (each tag row was a heap tuple plus a primary-key entry). A query walks the runs of
-- its key in order and reads the range of events each covers. The old rows become runs of consecutive
-- positions (gaps-and-islands).
--
-- `tamma_append(…, p_plain => true)` inserts with a plain INSERT instead of `ON CONFLICT (id) DO NOTHING`
-- (a speculative insertion per row, ~30% of a large insert); `tamma_append_large` calls it inside an
-- exception block and, when an id of the batch is already stored, runs the batch again the checked way.

CREATE TABLE tamma_tag_runs (
    tag   text   NOT NULL,
    first bigint NOT NULL,
    last  bigint NOT NULL,
    PRIMARY KEY (tag, first)
);
CREATE TABLE tamma_type_runs (
    type  text   NOT NULL,
    first bigint NOT NULL,
    last  bigint NOT NULL,
    PRIMARY KEY (type, first)
);
INSERT INTO tamma_tag_runs (tag, first, last)
SELECT r.tag, min(r.position), max(r.position)
  FROM (SELECT t.tag, t.position,
               t.position - row_number() OVER (PARTITION BY t.tag ORDER BY t.position) AS island
          FROM tamma_event_tags t) r
 GROUP BY r.tag, r.island;
INSERT INTO tamma_type_runs (type, first, last)
SELECT r.type, min(r.position), max(r.position)
  FROM (SELECT e.type, e.position,
               e.position - row_number() OVER (PARTITION BY e.type ORDER BY e.position) AS island
          FROM tamma_events e) r
 GROUP BY r.type, r.island;
DROP TABLE tamma_event_tags;
DROP INDEX tamma_events_type_position;

-- The lowest position in (p_after, p_below) of an event matching one query item (any of p_types, or any
-- type when empty; all of p_tags), or NULL: the leapfrog join of version 1 over runs. The next position
-- at or after a candidate carrying a key is where the first run reaching the candidate starts, or the
-- candidate itself when that run covers it (the run that may cover it is the last one starting at or
-- before it: one index search).
CREATE OR REPLACE FUNCTION tamma_item_first(p_after bigint, p_types text[], p_tags text[], p_below bigint)
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
            SELECT greatest(r.first, v_cand) INTO v_pos FROM tamma_tag_runs r
             WHERE r.tag = p_tags[v_i + 1] AND r.last >= v_cand
               AND r.first >= coalesce((SELECT s.first FROM tamma_tag_runs s
                                         WHERE s.tag = p_tags[v_i + 1] AND s.first <= v_cand
                                         ORDER BY s.first DESC LIMIT 1), v_cand)
             ORDER BY r.first LIMIT 1;
        ELSE
            FOR v_t IN 1 .. v_ntypes LOOP
                SELECT greatest(r.first, v_cand) INTO v_p FROM tamma_type_runs r
                 WHERE r.type = p_types[v_t] AND r.last >= v_cand
                   AND r.first >= coalesce((SELECT s.first FROM tamma_type_runs s
                                             WHERE s.type = p_types[v_t] AND s.first <= v_cand
                                             ORDER BY s.first DESC LIMIT 1), v_cand)
                 ORDER BY r.first LIMIT 1;
                IF FOUND AND (v_pos IS NULL OR v_p < v_pos) THEN
                    v_pos := v_p;
                END IF;
            END LOOP;
        END IF;
        IF v_pos IS NULL OR v_pos >= p_below THEN
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

-- Same contract as version 3's tamma_append, with runs, and `p_plain` (see above). Replaced, not
-- overloaded: a caller passing the 15 arguments of version 3 gets p_plain = false.
DROP FUNCTION tamma_append(int[], bigint[], int[], int[], int[], text[], text[], uuid[], text[],
                           timestamptz[], int[], int[], text[], text[], text[]);

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
    p_data         text[],
    p_plain        boolean DEFAULT false
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
    v_inserted bigint;
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
        IF v_conflict IS NOT NULL THEN
            -- Stored ids decide before the condition: a retry is answered with its rows, not re-checked.
            SELECT array_agg(e.id) INTO v_stored
              FROM tamma_events e WHERE e.id = ANY (p_ids[v_ev + 1 : v_ev + v_n]);
            IF v_stored IS NULL THEN
                o_status := 1;
                o_conflict := v_conflict;
            END IF;
        ELSE
            -- Stored ids are found by the insert itself (the unique index probes them anyway): when
            -- fewer rows went in than were sent, this append's rows are removed again and answered
            -- with the stored ones.
            IF p_plain THEN
                -- The caller catches unique_violation: no per-row conflict check.
                WITH ins AS (
                    INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                    SELECT v_head + i.ord, i.id, i.type, coalesce(i.ts, v_now), v_now,
                           p_tags[i.tag_start + 1 : i.tag_start + i.ntag], i.meta::jsonb, i.data::json
                      FROM unnest(p_ids[v_ev + 1 : v_ev + v_n], p_types[v_ev + 1 : v_ev + v_n],
                                  p_ts[v_ev + 1 : v_ev + v_n], p_meta[v_ev + 1 : v_ev + v_n],
                                  p_data[v_ev + 1 : v_ev + v_n], p_tag_start[v_ev + 1 : v_ev + v_n],
                                  p_tag_counts[v_ev + 1 : v_ev + v_n])
                           WITH ORDINALITY AS i (id, type, ts, meta, data, tag_start, ntag, ord)
                    RETURNING position, type, tags
                ), tag_runs AS (
                    INSERT INTO tamma_tag_runs (tag, first, last)
                    SELECT r.tag, min(r.position), max(r.position)
                      FROM (SELECT t.tag, ins.position,
                                   ins.position - row_number() OVER (PARTITION BY t.tag ORDER BY ins.position)
                                       AS island
                              FROM ins, unnest(ins.tags) AS t (tag)) r
                     GROUP BY r.tag, r.island
                ), type_runs AS (
                    INSERT INTO tamma_type_runs (type, first, last)
                    SELECT r.type, min(r.position), max(r.position)
                      FROM (SELECT ins.type, ins.position,
                                   ins.position - row_number() OVER (PARTITION BY ins.type ORDER BY ins.position)
                                       AS island
                              FROM ins) r
                     GROUP BY r.type, r.island
                )
                SELECT count(*) INTO v_inserted FROM ins;
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
                    ON CONFLICT (id) DO NOTHING
                    RETURNING position, type, tags
                ), tag_runs AS (
                    INSERT INTO tamma_tag_runs (tag, first, last)
                    SELECT r.tag, min(r.position), max(r.position)
                      FROM (SELECT t.tag, ins.position,
                                   ins.position - row_number() OVER (PARTITION BY t.tag ORDER BY ins.position)
                                       AS island
                              FROM ins, unnest(ins.tags) AS t (tag)) r
                     GROUP BY r.tag, r.island
                ), type_runs AS (
                    INSERT INTO tamma_type_runs (type, first, last)
                    SELECT r.type, min(r.position), max(r.position)
                      FROM (SELECT ins.type, ins.position,
                                   ins.position - row_number() OVER (PARTITION BY ins.type ORDER BY ins.position)
                                       AS island
                              FROM ins) r
                     GROUP BY r.type, r.island
                )
                SELECT count(*) INTO v_inserted FROM ins;
            END IF;
            IF v_inserted = v_n THEN
                o_status := 0;
                o_first := v_head + 1;
                v_head := v_head + v_n;
                v_wrote := true;
            ELSE
                DELETE FROM tamma_tag_runs t WHERE t.first > v_head;
                DELETE FROM tamma_type_runs t WHERE t.first > v_head;
                DELETE FROM tamma_events e WHERE e.position > v_head;
            END IF;
        END IF;
        IF o_status IS NULL THEN
            o_status := 2;
            SELECT json_agg(json_build_object(
                       'position', e.position, 'id', e.id, 'type', e.type,
                       'timestamp', (extract(epoch FROM e.timestamp) * 1000000)::bigint,
                       'tags', e.tags, 'metadata', e.metadata, 'data', e.data))
              INTO o_found
              FROM tamma_events e WHERE e.id = ANY (p_ids[v_ev + 1 : v_ev + v_n]);
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


-- tamma_append without per-row conflict checks, and with them only when an id of the batch is stored
-- (the exception block rolls the plain attempt back, rows and lock with it, before the checked one).
CREATE FUNCTION tamma_append_large(
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
BEGIN
    BEGIN
        RETURN QUERY SELECT * FROM tamma_append(p_counts, p_after, p_items, p_item_ntypes, p_item_ntags,
            p_item_types, p_item_tags, p_ids, p_types, p_ts, p_tag_start, p_tag_counts, p_tags, p_meta,
            p_data, true);
        RETURN;
    EXCEPTION WHEN unique_violation THEN
        NULL; -- an id of the batch is stored: answered below, append by append
    END;
    RETURN QUERY SELECT * FROM tamma_append(p_counts, p_after, p_items, p_item_ntypes, p_item_ntags,
        p_item_types, p_item_tags, p_ids, p_types, p_ts, p_tag_start, p_tag_counts, p_tags, p_meta,
        p_data, false);
END
$$;
