-- Named queries of the rates domain, loaded by ledgerflow.db.queries.
-- Each starts with "-- name: <name>".

-- name: resolve_codes
-- The ports a code stands for: the port itself, or every port in the region and all the
-- regions below it. Empty when the code is neither.
WITH RECURSIVE tree AS (
    SELECT slug FROM regions WHERE slug = %(code)s
    UNION ALL
    SELECT r.slug FROM regions AS r JOIN tree AS t ON r.parent_slug = t.slug
)
SELECT code FROM ports WHERE code = %(code)s
UNION
SELECT p.code FROM ports AS p JOIN tree AS t ON p.parent_slug = t.slug;

-- name: daily_rates
-- One row per day from date_to down to date_from (dates, not timestamps, so the series
-- does not depend on the session's time zone): the count and average of the lane's prices.
-- The codes compare with collation "C", as prices_lane_day_idx holds them (migration 009).
SELECT d.day::date, count(p.price), avg(p.price)
FROM generate_series(%(date_to)s::date, %(date_from)s::date, interval '-1 day') AS d(day)
LEFT JOIN prices AS p
    ON p.day = d.day::date
   AND p.day BETWEEN %(date_from)s::date AND %(date_to)s::date
   AND p.orig_code COLLATE "C" = ANY(%(orig)s::text[])
   AND p.dest_code COLLATE "C" = ANY(%(dest)s::text[])
GROUP BY d.day
ORDER BY d.day DESC;

-- name: claim_price_batch
INSERT INTO ledgerflow.price_batches (batch_id, source, row_count)
VALUES (%(batch_id)s, %(source)s, %(row_count)s)
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id;

-- name: price_batch
SELECT row_count, committed_at FROM ledgerflow.price_batches WHERE batch_id = %(batch_id)s;

-- name: known_ports
SELECT code FROM ports WHERE code = ANY(%(codes)s::text[]);

-- name: copy_prices
COPY prices (orig_code, dest_code, day, price) FROM STDIN (FORMAT BINARY);

-- name: has_prices
SELECT EXISTS (SELECT 1 FROM prices);

-- name: count_prices
SELECT count(*) FROM prices;

-- name: truncate_prices
TRUNCATE prices;

-- name: merge_regions
-- Parents before children, whatever order the input had.
WITH RECURSIVE ordered AS (
    SELECT slug, name, parent_slug, 0 AS depth FROM staging_regions
    WHERE parent_slug IS NULL OR parent_slug NOT IN (SELECT slug FROM staging_regions)
    UNION ALL
    SELECT s.slug, s.name, s.parent_slug, o.depth + 1
    FROM staging_regions AS s JOIN ordered AS o ON s.parent_slug = o.slug
)
INSERT INTO regions (slug, name, parent_slug)
SELECT slug, name, parent_slug FROM ordered ORDER BY depth
ON CONFLICT (slug) DO NOTHING;
