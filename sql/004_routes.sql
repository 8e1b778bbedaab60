-- Routes to the user's backend services (SPEC §10).
create table routes (
  id                    text primary key,
  name                  text not null unique,
  namespace             text not null,
  events                text[] not null,
  upstream              jsonb not null,
  mode                  text not null check (mode in ('request', 'notify')),
  timeout_ms            integer not null,
  max_in_flight         integer not null,
  relay                 boolean not null default false,
  -- The signing secret (whsec_…): the gateway signs with it, so it cannot be a hash. It is never listed nor logged.
  secret                text not null,
  -- After a rotation the previous secret also signs until previous_expires_at.
  previous_secret       text,
  previous_expires_at   timestamptz,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);
create index routes_created_idx on routes (created_at desc, id desc);
