#!/bin/bash
#SBATCH --job-name=${name}
#SBATCH --chdir=${workdir}
#SBATCH --output=${stdout}
#SBATCH --error=${stderr}
#SBATCH --time=${walltime_minutes}
#SBATCH --nodes=${nodes}
#SBATCH --ntasks=${tasks}
#SBATCH --cpus-per-task=${cpus_per_task}
${optional}#SBATCH --comment=urgentflow
${body}
