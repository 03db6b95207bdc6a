set -u
# urgentflow job: ${name}
rm -f ${exit_file_q}
${exports}
${setup}
cd ${workdir_q} || { echo 127 > ${exit_file_q}; exit 127; }
code=0
${fetch}
if [ "$$code" -eq 0 ]; then
${launch}${command}
code=$$?
fi
report=""
${publish}
# The exit file appears whole (the poller reads it as soon as it exists): the code, then the outputs.
printf '%s\n' "$$code$$report" > ${exit_tmp_q} && mv -f ${exit_tmp_q} ${exit_file_q}
${notice}
exit "$$code"
