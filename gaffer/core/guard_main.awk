# The guard while the manager lives (see guard.py): counts the "+PGID" and "-PGID" lines
# the manager writes on stdin. At the end of the input (the manager closed the pipe, or
# died), the groups still registered go, in the same lines, to the command in
# GAFFER_GUARD_STOP (guard_main.py), which stops them. A small awk holds the state for
# half a MiB where a Python would take five; Python starts only when there is work.
/^[+-][0-9]+$/ {
    pgid = substr($0, 2)
    if (substr($0, 1, 1) == "+") {
        groups[pgid]++
    } else if (--groups[pgid] <= 0) {
        delete groups[pgid]
    }
}
END {
    stop = ENVIRON["GAFFER_GUARD_STOP"]
    for (pgid in groups) {
        print "+" pgid | stop
    }
    close(stop)
}
