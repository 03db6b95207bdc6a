#!/bin/bash
#$$ -N ${name}
#$$ -S /bin/bash
#$$ -wd ${workdir}
#$$ -o ${stdout}
#$$ -e ${stderr}
#$$ -j n
#$$ -r n
#$$ -l h_rt=${walltime_seconds}
${optional}#$$ -ac urgentflow=1
${body}
