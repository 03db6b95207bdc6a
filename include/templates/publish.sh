# The job publishes its outputs itself once its command succeeded: each file goes to the object store
# through its presigned link (on curl's stdin, never on a command line), its sha256 and size are
# reported in the exit file. A missing file or a failed upload fails the job (exit 75).
uf_publish() {
  [ "$$code" -eq 0 ] || { cat >/dev/null; return 0; }
  if [ ! -f "$$1" ]; then
    cat >/dev/null; echo "urgentflow: output $$1 was not written" >&2; code=75; return 0
  fi
  if sum=$$(sha256sum -- "$$1") && size=$$(wc -c < "$$1") \
    && curl -fsS --retry 3 --retry-delay 1 --connect-timeout 10 -T "$$1" -K -; then
    report="$$report
output $${sum%% *} $$((size)) $$1"
  else
    echo "urgentflow: could not publish output $$1" >&2; code=75
  fi
}
