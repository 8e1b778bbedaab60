-- Keys, policies and the audit log (SPEC §3, §4, §7).

create table policies (
  id          text primary key,
  name        text not null unique,
  rules       jsonb not null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table api_keys (
  id                    text primary key,
  name                  text not null,
  -- SHA-256 of the secret; the secret itself is never stored.
  secret_hash           bytea not null,
  -- After a rotation the previous secret keeps working until previous_expires_at.
  previous_secret_hash  bytea,
  previous_expires_at   timestamptz,
  scopes                text[] not null default '{}',
  policy_id             text references policies (id) on delete restrict,
  allowed_ips           text[] not null default '{}',
  rate_limit            jsonb,
  max_connections       integer,
  expires_at            timestamptz,
  revoked_at            timestamptz,
  created_at            timestamptz not null default now(),
  last_used_at          timestamptz
);
create index api_keys_created_idx on api_keys (created_at desc, id desc);
create index api_keys_policy_idx on api_keys (policy_id);

create table auth_attempts (
  id          bigserial primary key,
  at          timestamptz not null default now(),
  key_id      text,
  ip          text,
  transport   text not null check (transport in ('http', 'socket')),
  namespace   text,
  outcome     text not null check (outcome in ('allowed', 'refused')),
  reason      text,
  user_agent  text
);
create index auth_attempts_key_idx on auth_attempts (key_id, id desc);
create index auth_attempts_ip_idx on auth_attempts (ip, id desc);
