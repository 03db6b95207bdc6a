#!/bin/bash
# local job ${name}: a background process group on this host, walltime ${walltime_minutes} min
${body}
