# The job fetches its inputs itself before its command: each object through its presigned link (on curl's
# stdin, never on a command line). An input with a recorded sha256 is checked against it and kept once
# for the run in ${cache_q}, read-only, for the run's other jobs (a hard link, or a copy across file
# systems). A failed fetch or a sha256 that differs fails the job before its command runs (exit 66).
uf_fetch() {  # name, sha256 (empty: none recorded); the link on stdin
  [ "$$code" -eq 0 ] || { cat >/dev/null; return 0; }
  if [ -z "$$2" ]; then
    curl -fsS --retry 3 --retry-delay 1 --connect-timeout 10 -o "$$1" -K - \
      || { echo "urgentflow: could not fetch input $$1" >&2; code=66; }
    return 0
  fi
  kept=${cache_q}/$$2
  if [ -f "$$kept" ]; then
    cat >/dev/null
  elif mkdir -p ${cache_q} && curl -fsS --retry 3 --retry-delay 1 --connect-timeout 10 -o "$$kept.$$$$" -K - \
    && [ "$$(sha256sum < "$$kept.$$$$")" = "$$2  -" ]; then
    chmod a-w "$$kept.$$$$" && mv -f "$$kept.$$$$" "$$kept"
  else
    rm -f "$$kept.$$$$"; echo "urgentflow: could not fetch input $$1 with sha256 $$2" >&2; code=66; return 0
  fi
  ln -f "$$kept" "$$1" 2>/dev/null || cp -f "$$kept" "$$1" \
    || { echo "urgentflow: could not place input $$1" >&2; code=66; }
}
