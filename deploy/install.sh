#!/usr/bin/env bash
# Install shangyun on a Debian/Ubuntu edge box as a systemd service.
#   sudo deploy/install.sh [path/to/gateway.yaml]
# Re-running upgrades the package in place and keeps config and data.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
config=${1:-}

apt-get update -qq
apt-get install -y -qq python3 python3-venv >/dev/null

id shangyun >/dev/null 2>&1 || useradd --system --home /var/lib/shangyun --shell /usr/sbin/nologin shangyun
install -d -o shangyun -g shangyun -m 0750 /var/lib/shangyun
install -d -m 0755 /etc/shangyun /opt/shangyun

python3 -m venv /opt/shangyun/venv
/opt/shangyun/venv/bin/pip install -q --upgrade pip
# The lock file pins every dependency to the versions the tests ran with.
/opt/shangyun/venv/bin/pip install -q -c "$src/requirements.lock" "$src"

if [ -n "$config" ]; then
  install -m 0640 -g shangyun "$config" /etc/shangyun/gateway.yaml
elif [ ! -f /etc/shangyun/gateway.yaml ]; then
  echo "no config given and none at /etc/shangyun/gateway.yaml: write one (see README) and re-run" >&2
fi
if [ -f /etc/shangyun/gateway.yaml ]; then
  /opt/shangyun/venv/bin/shangyun check -c /etc/shangyun/gateway.yaml
fi

install -m 0644 "$src/deploy/shangyun.service" /etc/systemd/system/shangyun.service
systemctl daemon-reload
systemctl enable shangyun.service
[ -f /etc/shangyun/gateway.yaml ] && systemctl restart shangyun.service
echo "installed; status: systemctl status shangyun; devices: /opt/shangyun/venv/bin/shangyun status -c /etc/shangyun/gateway.yaml"
