-- `stagecast pixel set-token`: store a sealed token, clear any plaintext. $1 is the pixel's row
-- id or its platform id; when several rows match, nothing changes and the count says why.
WITH target AS (
    SELECT id FROM public.pixels WHERE id::text = $1 OR pixel_id = $1
), guard AS (
    SELECT count(*) AS n FROM target
), updated AS (
    UPDATE public.pixels p
       SET access_token_enc = $2, access_token = NULL, updated_at = now()
      FROM target, guard
     WHERE p.id = target.id AND guard.n = 1
    RETURNING 1
)
SELECT (SELECT n FROM guard)
