#!/usr/bin/env bash
# make cluster: private PostgreSQL + Redis, three gateway instances on 3001-3003
# and, when nginx is installed, nginx on 3000 in front of them. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export TEST_SERVERS_STATE="${CLUSTER_STATE:-$PWD/.cluster-servers.env}"
work=$(mktemp -d "${TMPDIR:-/tmp}/spark-cluster-XXXXXX")
pids=()

cleanup() {
  trap - EXIT INT TERM
  echo "stopping the cluster" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  bash scripts/test-servers.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/test-servers.sh start >&2
set -a; . "$TEST_SERVERS_STATE"; set +a

secret_file="$work/jwt-secret"
head -c 48 /dev/urandom | base64 | tr -d '\n' > "$secret_file"
export DATABASE_URL="$TEST_DATABASE_URL" REDIS_URL="$TEST_REDIS_URL"
export JWT_SECRET="$(cat "$secret_file")"
export TRUST_PROXY="${TRUST_PROXY:-127.0.0.1}"

for port in 3001 3002 3003; do
  PORT=$port node --import tsx src/server.ts > >(sed -u "s/^/[$port] /") 2>&1 &
  pids+=($!)
done

if command -v nginx >/dev/null 2>&1; then
  cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream rest { least_conn; server 127.0.0.1:3001; server 127.0.0.1:3002; server 127.0.0.1:3003; }
  upstream sockets { hash \$remote_addr consistent; server 127.0.0.1:3001; server 127.0.0.1:3002; server 127.0.0.1:3003; }
  server {
    listen 127.0.0.1:3000;
    location /socket.io/ {
      proxy_pass http://sockets; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
    location / {
      proxy_pass http://rest; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
  nginx -c "$work/nginx.conf"
  echo "nginx on http://127.0.0.1:3000 in front of 3001-3003" >&2
else
  echo "nginx is not installed (apt-get install nginx): use the instances on 3001-3003 directly" >&2
fi
echo "cluster up; Ctrl-C stops everything" >&2
wait -n "${pids[@]}" || true
