-- Tenants (SPEC §14): each key belongs to one, fixed at creation; keys made before tenants are the default's.
alter table api_keys add column tenant text not null default 'default';
create index api_keys_tenant_created_idx on api_keys (tenant, created_at desc, id desc);
