set -u
# urgentflow job: ${name}
rm -f ${exit_file_q}
${exports}
${setup}
cd ${workdir_q} || { echo 127 > ${exit_file_q}; exit 127; }
${launch}${command}
code=$$?
echo "$$code" > ${exit_file_q}
exit "$$code"
