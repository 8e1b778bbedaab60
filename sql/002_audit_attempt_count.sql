-- Refusals made before any credential is read (rate limit, anomaly block) are stored as one
-- summary row per IP, reason and window; `count` is how many attempts a row stands for (SPEC §7).
alter table auth_attempts add column count integer not null default 1 check (count >= 1);
