#!/usr/bin/env bash
# The widget and report tests drive Debian's headless chromium. Install it when missing and we may (root,
# apt); otherwise say so: those tests then skip with the same message. Never fails the build.
set -u
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium + chromium-driver + an emoji font for the browser tests (~20 s)"
  pkgs="chromium chromium-driver fonts-noto-color-emoji"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q $pkgs >/tmp/rag-autotune-apt.log 2>&1 \
     || { apt-get update -q >>/tmp/rag-autotune-apt.log 2>&1 && apt-get install -y -q $pkgs >>/tmp/rag-autotune-apt.log 2>&1; }; then
    exit 0
  fi
  echo "apt-get could not install chromium (see /tmp/rag-autotune-apt.log): the browser tests will skip"
else
  echo "no chromium and no root apt-get: the browser tests will skip (apt-get install chromium chromium-driver)"
fi
exit 0
