-- Tamma event store, schema version 7: a group of appends inserted by one statement.
--
-- tamma_append (version 6) checks and inserts the appends of a group one after another: one INSERT
-- statement per append, whose executor start-up and shutdown cost more server time than a few rows do
-- (16 single-event appends took about 185 µs of server CPU per event, a 100-event append about 28).
-- tamma_append_group takes the same arguments plus where each append's condition meets the appends
-- before it in the group (computed by the writer, which holds the group's events), checks every
-- condition first — against the stored events with the same index probes as tamma_append, and against
-- the group's earlier appends that pass from those arguments — and then inserts the events and runs
-- of every append that passed in one statement.
--
-- It hands the whole group to tamma_append (nothing of its own written) when that cannot be done:
-- an append repeats a stored id (a retry: its rows are undone with the block that caught the unique
-- violation), or a condition whose `after` lies above the head meets an earlier append of the group.
--
-- Arguments 1–20 are tamma_append's. Then, per event: the append it belongs to (from 1) and its place
-- in that append (from 1); per run: its append; per append: how many (append, place) pairs follow in
-- p_dep_apps / p_dep_places: the earlier appends of the group holding an event the append's condition
-- matches, in order, each with the place of the first such event.

CREATE FUNCTION tamma_append_group(
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
    p_skip         boolean[],
    p_ev_app       int[],
    p_ev_place     int[],
    p_run_app      int[],
    p_dep_counts   int[],
    p_dep_apps     int[],
    p_dep_places   int[]
) RETURNS TABLE (o_status smallint, o_first bigint, o_conflict bigint, o_found json, o_head bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_head     bigint;
    v_rec      timestamptz;
    v_now      timestamptz;
    v_stored   uuid[];
    v_apps     int := coalesce(array_length(p_counts, 1), 0);
    v_ev       int := 0;
    v_item     int := 0;
    v_ity      int := 0;
    v_itg      int := 0;
    v_dep      int := 0;
    v_n        int;
    v_conflict bigint;
    v_pos      bigint;
    v_trusted  boolean;
    v_total    bigint := 0;
    v_inserted bigint;
    v_constraint text;
    v_json     json;
    -- Whether the group goes to tamma_append instead (see above).
    v_one_by_one boolean := false;
    -- Per append: whether it is written, its events' offset from the head, and its answer.
    v_pass     boolean[] := '{}';
    v_base     bigint[] := '{}';
    v_status   smallint[] := '{}';
    v_first    bigint[] := '{}';
    v_conf     bigint[] := '{}';
    v_found    json[] := '{}';
    a          int;
    k          int;
    j          int;
BEGIN
    PERFORM pg_advisory_xact_lock(6071218766870478849);
    SELECT e.position, e.recorded_at INTO v_head, v_rec
      FROM tamma_events e ORDER BY e.position DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT s.removed_through INTO v_head FROM tamma_events_state s;
        v_head := coalesce(v_head, 0);
    END IF;
    v_trusted := p_skip_head IS NOT NULL AND p_skip_head = v_head;
    v_now := greatest(clock_timestamp(), v_rec);
    FOR a IN 1 .. v_apps LOOP
        v_n := p_counts[a];
        v_conflict := NULL;
        IF p_after[a] IS NOT NULL THEN
            -- The stored events, as tamma_append checks them (nothing of the group is inserted yet).
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
            -- Then the group's earlier appends that pass: every event they write lies above the
            -- head, so above `after` unless `after` itself lies above the head.
            IF v_conflict IS NULL AND p_dep_counts[a] > 0 THEN
                IF p_after[a] > v_head THEN
                    v_one_by_one := true;
                    EXIT;
                END IF;
                FOR k IN v_dep + 1 .. v_dep + p_dep_counts[a] LOOP
                    j := p_dep_apps[k];
                    IF v_pass[j] THEN
                        v_conflict := v_head + v_base[j] + p_dep_places[k];
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
        END IF;
        v_dep := v_dep + p_dep_counts[a];
        IF v_conflict IS NULL THEN
            v_pass[a] := true;
            v_base[a] := v_total;
            v_status[a] := 0;
            v_first[a] := v_head + v_total + 1;
            v_total := v_total + v_n;
        ELSE
            SELECT array_agg(e.id) INTO v_stored
              FROM unnest(p_ids[v_ev + 1 : v_ev + v_n]) AS u (id)
              JOIN tamma_events e ON e.id = u.id;
            v_pass[a] := false;
            IF v_stored IS NULL THEN
                v_status[a] := 1;
                v_conf[a] := v_conflict;
            ELSE
                -- A retry of an append stored before: answered with the stored rows.
                SELECT json_agg(json_build_object(
                           'position', e.position, 'id', e.id, 'type', e.type,
                           'timestamp', (extract(epoch FROM e.timestamp) * 1000000)::bigint,
                           'tags', e.tags, 'metadata', e.metadata, 'data', e.data))
                  INTO v_json
                  FROM unnest(p_ids[v_ev + 1 : v_ev + v_n]) AS u (id)
                  JOIN tamma_events e ON e.id = u.id;
                v_status[a] := 2;
                v_found[a] := v_json;
            END IF;
        END IF;
        v_ev := v_ev + v_n;
    END LOOP;
    IF v_total > 0 AND NOT v_one_by_one THEN
        BEGIN
            WITH ins AS (
                INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                SELECT v_head + v_base[i.app] + i.place, i.id, i.type, coalesce(i.ts, v_now), v_now,
                       i.tags::text[], i.meta::jsonb, i.data::json
                  FROM unnest(p_ids, p_types, p_ts, p_tags, p_meta, p_data, p_ev_app, p_ev_place)
                       AS i (id, type, ts, tags, meta, data, app, place)
                 WHERE v_pass[i.app]
                RETURNING position
            ), runs AS (
                SELECT r.k, v_head + v_base[r.app] + r.f AS first, v_head + v_base[r.app] + r.l AS last, r.t
                  FROM unnest(p_run_keys, p_run_first, p_run_last, p_run_type, p_run_app)
                       AS r (k, f, l, t, app)
                 WHERE v_pass[r.app]
            ), tag_runs AS (
                INSERT INTO tamma_tag_runs (tag, first, last)
                SELECT runs.k, runs.first, runs.last FROM runs WHERE NOT runs.t
            ), type_runs AS (
                INSERT INTO tamma_type_runs (type, first, last)
                SELECT runs.k, runs.first, runs.last FROM runs WHERE runs.t
            )
            SELECT count(*) INTO v_inserted FROM ins;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            IF v_constraint IS DISTINCT FROM 'tamma_events_id_key' THEN
                RAISE;
            END IF;
            v_inserted := -1;
        END;
        -- A stored id: the block undid the group's rows; tamma_append finds each retry.
        v_one_by_one := v_inserted IS DISTINCT FROM v_total;
    END IF;
    IF v_one_by_one THEN
        RETURN QUERY SELECT * FROM tamma_append(
            p_counts, p_after, p_items, p_item_ntypes, p_item_ntags, p_item_types,
            p_item_tags, p_ids, p_types, p_ts, p_tags, p_meta, p_data, p_run_counts,
            p_run_keys, p_run_first, p_run_last, p_run_type, p_skip_head, p_skip);
        RETURN;
    END IF;
    o_head := v_head;
    FOR a IN 1 .. v_apps LOOP
        o_status := v_status[a];
        o_first := v_first[a];
        o_conflict := v_conf[a];
        o_found := v_found[a];
        RETURN NEXT;
    END LOOP;
    IF v_total > 0 THEN
        PERFORM pg_notify('tamma_events', (v_head + v_total)::text);
    END IF;
    RETURN;
END
$$;
