-- Tamma event store, schema version 5: tags and types indexed by runs.
--
-- A run (key, first, last) says every event from `first` to `last` carries the tag (or has the type);
-- runs of one key never overlap. An append of 100 events of one type sharing two tags writes three runs
-- instead of 200 `tamma_event_tags` rows and 100 `(type, position)` index entries. Measured here in one
-- session, 100,000 events inserted in one statement: the events table with its primary key and id index
-- cost 9.8 us per event, the `(type, position)` index 2.5 more, and the tag table (two rows per event)
-- 12.2 more: half of an append's server time went into indexing tags one event at a time.
--
-- Runs of one key never overlap, so ordered by `last` they are ordered by `first` too, and the first run
-- ending at or after a position is the one covering it or else the next: the `(key, last)` primary key
-- finds it in one probe. A query walks the runs of its key in order from there and reads the range of
-- events each covers, so it still touches only matching events and stops at its limit. A condition is an
-- intersection of runs (tamma_item_first). Retention removes the runs wholly before its cut and trims
-- the one reaching past it (BRIN on `first`: runs are written in position order).
--
-- The runs of an append are computed by the client (it has the events) and passed as offsets from the
-- append's first position; tamma_append stores them with the events, in the same statement. The older
-- tamma_append functions wrote tag rows and are dropped: a process of an older build still running
-- gets "function does not exist" until it restarts (and is then refused by this newer schema).

CREATE TABLE tamma_tag_runs (
    tag   text   NOT NULL,
    first bigint NOT NULL,
    last  bigint NOT NULL,
    PRIMARY KEY (tag, last)
);
CREATE INDEX tamma_tag_runs_first ON tamma_tag_runs USING brin (first);

CREATE TABLE tamma_type_runs (
    type  text   NOT NULL,
    first bigint NOT NULL,
    last  bigint NOT NULL,
    PRIMARY KEY (type, last)
);
CREATE INDEX tamma_type_runs_first ON tamma_type_runs USING brin (first);

-- Runs of the stored events: consecutive positions of one key (gaps and islands).
INSERT INTO tamma_tag_runs (tag, first, last)
    SELECT tag, min(position), max(position)
      FROM (SELECT tag, position,
                   position - row_number() OVER (PARTITION BY tag ORDER BY position) AS island
              FROM tamma_event_tags) x
     GROUP BY tag, island;
INSERT INTO tamma_type_runs (type, first, last)
    SELECT type, min(position), max(position)
      FROM (SELECT type, position,
                   position - row_number() OVER (PARTITION BY type ORDER BY position) AS island
              FROM tamma_events) x
     GROUP BY type, island;

DROP FUNCTION tamma_append(int[], bigint[], int[], int[], int[], text[], text[], uuid[], text[],
                           timestamptz[], int[], int[], text[], text[], text[]);
DROP FUNCTION tamma_append(int[], bigint[], int[], int[], int[], text[], text[], uuid[], text[],
                           timestamptz[], text[], text[], text[]);
DROP TABLE tamma_event_tags;
DROP INDEX tamma_events_type_position;

-- The lowest position in (p_after, p_below) of an event matching one query item (any of p_types, or any
-- type when empty; all of p_tags), or NULL.
--
-- The item is an intersection of ordered streams: one per tag (its runs) and one for the types (the
-- union of their runs). A leapfrog join seeks each stream in turn to the current candidate position
-- (the candidate itself when a run covers it, else where the next run starts: the first run ending at
-- or after it, one probe) and jumps the candidate forward to it, until every stream agrees. Its cost follows the rarest stream, never the number of
-- events carrying the common one.
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
             ORDER BY r.last LIMIT 1;
        ELSE
            FOR v_t IN 1 .. v_ntypes LOOP
                v_p := NULL;
                SELECT greatest(r.first, v_cand) INTO v_p FROM tamma_type_runs r
                 WHERE r.type = p_types[v_t] AND r.last >= v_cand
                 ORDER BY r.last LIMIT 1;
                IF v_p < coalesce(v_pos, p_below) THEN
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

-- Appends a batch of appends in one transaction (group commit), as in version 4, writing runs instead of
-- tag rows. Per append, p_run_counts gives how many runs it has; per run, p_run_keys (the tag or type),
-- p_run_first and p_run_last (1 = the append's first event) and p_run_type (true: a type run).
--
-- p_skip (per append) marks conditions the calling writer has ruled out from the positions it wrote
-- itself (a writer appending to its own stream after reading it); they are trusted only when the head
-- found under the lock is p_skip_head, the head after that writer's last commit: then nobody else wrote
-- since, and the writer's knowledge is the whole story. Otherwise every condition is checked. Each row
-- returns that head (o_head), so the writer can tell.
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
    p_tags         text[],
    p_meta         text[],
    p_data         text[],
    p_run_counts   int[],
    p_run_keys     text[],
    p_run_first    int[],
    p_run_last     int[],
    p_run_type     boolean[],
    p_skip_head    bigint,
    p_skip         boolean[]
) RETURNS TABLE (o_status smallint, o_first bigint, o_conflict bigint, o_found json, o_head bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_head     bigint;
    v_rec      timestamptz;
    v_now      timestamptz;
    v_stored   uuid[];
    v_ev       int := 0;
    v_run      int := 0;
    v_item     int := 0;
    v_ity      int := 0;
    v_itg      int := 0;
    v_n        int;
    v_m        int;
    v_conflict bigint;
    v_pos      bigint;
    v_wrote    boolean := false;
    v_inserted bigint;
    v_trusted  boolean;
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
    o_head := v_head;
    v_trusted := p_skip_head IS NOT NULL AND p_skip_head = v_head;
    v_now := greatest(clock_timestamp(), v_rec);
    FOR a IN 1 .. coalesce(array_length(p_counts, 1), 0) LOOP
        v_n := p_counts[a];
        v_m := p_run_counts[a];
        o_status := NULL; o_first := NULL; o_conflict := NULL; o_found := NULL;
        v_conflict := NULL;
        IF p_after[a] IS NOT NULL THEN
            IF p_items[a] = 0 THEN
                IF NOT (v_trusted AND p_skip[a]) THEN
                    SELECT e.position INTO v_conflict FROM tamma_events e
                     WHERE e.position > p_after[a] ORDER BY e.position LIMIT 1;
                END IF;
            ELSIF p_after[a] < 9223372036854775807 AND NOT (v_trusted AND p_skip[a]) THEN
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
              FROM unnest(p_ids[v_ev + 1 : v_ev + v_n]) AS u (id)
              JOIN tamma_events e ON e.id = u.id;
            IF v_stored IS NULL THEN
                o_status := 1;
                o_conflict := v_conflict;
            END IF;
        ELSE
            -- Stored ids are found by the insert itself (the unique index probes them anyway): when
            -- fewer rows went in than were sent, this append's rows and runs are removed again and it
            -- is answered with the stored rows.
            WITH ins AS (
                INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                SELECT v_head + i.ord, i.id, i.type, coalesce(i.ts, v_now), v_now,
                       i.tags::text[], i.meta::jsonb, i.data::json
                  FROM unnest(p_ids[v_ev + 1 : v_ev + v_n], p_types[v_ev + 1 : v_ev + v_n],
                              p_ts[v_ev + 1 : v_ev + v_n], p_tags[v_ev + 1 : v_ev + v_n],
                              p_meta[v_ev + 1 : v_ev + v_n], p_data[v_ev + 1 : v_ev + v_n])
                       WITH ORDINALITY AS i (id, type, ts, tags, meta, data, ord)
                ON CONFLICT (id) DO NOTHING
                RETURNING position
            ), runs AS (
                SELECT r.k, v_head + r.f AS first, v_head + r.l AS last, r.t
                  FROM unnest(p_run_keys[v_run + 1 : v_run + v_m], p_run_first[v_run + 1 : v_run + v_m],
                              p_run_last[v_run + 1 : v_run + v_m], p_run_type[v_run + 1 : v_run + v_m])
                       AS r (k, f, l, t)
            ), tag_runs AS (
                INSERT INTO tamma_tag_runs (tag, first, last)
                SELECT runs.k, runs.first, runs.last FROM runs WHERE NOT runs.t
            ), type_runs AS (
                INSERT INTO tamma_type_runs (type, first, last)
                SELECT runs.k, runs.first, runs.last FROM runs WHERE runs.t
            )
            SELECT count(*) INTO v_inserted FROM ins;
            IF v_inserted = v_n THEN
                o_status := 0;
                o_first := v_head + 1;
                v_head := v_head + v_n;
                v_wrote := true;
            ELSE
                DELETE FROM tamma_tag_runs r WHERE r.first > v_head;
                DELETE FROM tamma_type_runs r WHERE r.first > v_head;
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
              FROM unnest(p_ids[v_ev + 1 : v_ev + v_n]) AS u (id)
              JOIN tamma_events e ON e.id = u.id;
        END IF;
        RETURN NEXT;
        v_ev := v_ev + v_n;
        v_run := v_run + v_m;
    END LOOP;
    IF v_wrote THEN
        PERFORM pg_notify('tamma_events', v_head::text);
    END IF;
    RETURN;
END
$$;
