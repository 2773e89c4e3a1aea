# A pet's or snowflake's removal (its destroy provisioner): sh remove.sh NAME.
# Stopped, a machine leaves Consul by itself (fleet-init), and Consul drops a member that left
# from its catalog. One that could not leave (stopped past the timeout on a loaded host,
# killed) is called failed, and would stay among Consul's members, and in its catalog, for
# 72 h: once its container is gone it is pruned (`consul force-leave -prune`, with the operator
# token Terraform runs with; the leader then deregisters it), as a cattle node's drain does
# (terraform/lab/cattle). A member that left, or is leaving, is left to Consul.
name=$1
docker stop -t 10 "$name" >/dev/null 2>&1
docker rm -f "$name" >/dev/null 2>&1
if [ "$(consul members 2>/dev/null | awk -v node="$name" '$1 == node { print $3 }')" = failed ]; then
  consul force-leave -prune "$name" >/dev/null 2>&1
fi
exit 0
