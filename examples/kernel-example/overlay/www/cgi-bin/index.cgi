#!/bin/sh
# The web server's page: what this virtual process sees of the machine.
printf 'Content-Type: text/plain\r\n\r\n'
echo "hello from the hydra kernel example"
echo "hostname:   $(hostname)"
echo "processes:  $(ls -d /proc/[0-9]* | wc -l) visible in this pid namespace:"
ps -o pid,comm | sed 1d | sed 's/^/  /'
echo "interfaces: $(ip -o link | awk -F': ' '{sub(/@.*/, "", $2); printf "%s ", $2}')"
echo "addresses:  $(ip -o -4 addr | awk '{printf "%s ", $4}')"
echo "open files: at most $(awk '/^Max open files/ {print $4}' /proc/self/limits) (resources.max_files)"
