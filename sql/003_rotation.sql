-- Tokens outlive a rotation only as long as the secret that minted them (SPEC §3): each rotation starts a new
-- generation of the key's secret, and a token carries the generation of the secret it was minted with.
alter table api_keys add column secret_generation integer not null default 0;
