#!/bin/bash
# Container health check without curl in the image: one HTTP/1.1 GET over bash's /dev/tcp,
# healthy when the status line says 200. Plain HTTP only (the images serve plain HTTP behind a
# TLS-terminating proxy); with in-process TLS use an orchestrator probe instead.
# HEALTHCHECK_PORT and HEALTHCHECK_PATH select what is probed (defaults: the broker's /healthz).
set -euo pipefail
port="${HEALTHCHECK_PORT:-8080}"
path="${HEALTHCHECK_PATH:-/healthz}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r status <&3
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "unhealthy: ${status:-no answer} from 127.0.0.1:${port}${path}" >&2; exit 1 ;;
esac
