# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cutover_global_optspecs
    string join \n coordinator= ca= identity= cli-config= h/help V/version
end

function __fish_cutover_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cutover_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cutover_using_subcommand
    set -l cmd (__fish_cutover_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cutover -n "__fish_cutover_needs_command" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_needs_command" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_needs_command" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_needs_command" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_needs_command" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_needs_command" -s V -l version -d 'Print version'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "token" -d 'Manage join tokens for new hosts'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "hosts" -d 'List the fleet, or remove a host'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "service" -d 'One service: what is live in each environment, the deployment running now, every host that runs it (version, health, drain, drift) and the latest deployments'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "services" -d 'Every service in the fleet: on how many hosts, which releases are active where, and the hosts drained, stopped or drifted'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "audit" -d 'Show the coordinator\'s audit log, newest first'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "logs" -d 'Show a service\'s output (stdout and stderr of its instances) from the hosts running it, fetched over the agents\' sessions'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "whoami" -d 'Show which operator and role this CLI authenticates as'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "coordinators" -d 'Show the coordinators sharing the store: which leads, in which term, which are up (several coordinators on PostgreSQL; with the SQLite store, the one coordinator)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "drain" -d 'Take a host out of its load balancers (maintenance): its readiness endpoint answers 503, pre_drain hooks run, then it waits until each balancer checking the endpoint has been told "down" `balancer_fall` times (or `deregistration_delay`, as the spec\'s `[drain]` says), and says who confirmed. A swap in progress finishes first; later deployments skip the host unless --include-drained. docs/load-balancers.md'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "undrain" -d 'Put a drained host back (starting services the drain stopped)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "plan" -d 'Show the batches a spec would make against today\'s fleet'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "deploy" -d 'Deploy a spec. Exit codes with --watch: 0 succeeded, 2 failed, 3 rolled back, 4 aborted (1: could not start)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "drift" -d 'Hosts whose services differ from what Cutover deployed, and why (exit 0 either way; `-o json` for scripts)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "stats" -d 'Delivery performance (DORA): deployment frequency, lead time for changes, change failure rate, time to restore'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "status" -d 'A deployment\'s state (default: the newest)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "watch" -d 'Follow a deployment until it ends (same exit codes as deploy --watch)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "history" -d 'Deployments of a service, newest first'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "pause" -d 'Stop starting new batches of a deployment'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "resume" -d 'Go on with a paused deployment'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "abort" -d 'Stop a deployment and roll back the hosts it changed'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "promote" -d 'Promote a canary step'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "approve" -d 'Approve a deployment whose spec asks for it (`targets.approval`): it has staged everywhere and waits; an operator other than the one who submitted it lets it go on'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "rollback" -d 'Deploy an earlier successful version of a service again'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "serve" -d 'Run the coordinator daemon'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "backup" -d 'Copy the store and the PKI into a new directory, while the coordinator runs (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "restore" -d 'Put a backup in place of the store and the PKI; the coordinator must be stopped (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "config" -d 'Check the coordinator config and exit (for ExecStartPre=)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "ca" -d 'Manage the cluster CA and operator certificates (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "haproxy-switch" -d 'A blue/green switch command for HAProxy (a spec\'s `strategy.switch`): sets the live group\'s servers of BACKEND (named after the hosts, from CUTOVER_HOSTS) `ready`, waits until HAProxy has them up, then sets every other server `drain`. Talks to HAProxy\'s admin socket (`stats socket ... level admin`). docs/load-balancers.md'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "validate" -d 'Check a deployment spec (locally; no coordinator needed)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "demo" -d 'Run a whole fleet on this machine: a coordinator, agents and a sample service'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "completions" -d 'Print the shell completion script (e.g. `cutover completions bash > /etc/bash_completion.d/cutover`)'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "man" -d 'Write the manual pages (cutover.1 and one per command) into DIR'
complete -c cutover -n "__fish_cutover_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -f -a "create" -d 'Create a join token and print it with the CA fingerprint'
complete -c cutover -n "__fish_cutover_using_subcommand token; and not __fish_seen_subcommand_from create help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l ttl -d 'How long the token stays valid' -r
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l uses -d 'How many hosts may enroll with it' -r
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l labels -d 'Labels bound to every host that enrolls with it (k=v,k2=v2)' -r
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a join token and print it with the CA fingerprint'
complete -c cutover -n "__fish_cutover_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -s l -l selector -d 'Only hosts matching this label selector (e.g. role=web,zone!=b)' -r
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -f -a "remove" -d 'Forget a host; its certificate stops working at its next connection'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -f -a "show" -d 'One host in detail: labels, machine, agent, and every service with its releases, health, drain and drift'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and not __fish_seen_subcommand_from remove show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Forget a host; its certificate stops working at its next connection'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from help" -f -a "show" -d 'One host in detail: labels, machine, agent, and every service with its releases, health, drain and drift'
complete -c cutover -n "__fish_cutover_using_subcommand hosts; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand service" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand service" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand service" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand service" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand service" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand service" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand services" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand services" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand services" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand services" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand services" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand services" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand audit" -l limit -d 'At most this many entries, newest first' -r
complete -c cutover -n "__fish_cutover_using_subcommand audit" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand audit" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand audit" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand audit" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand audit" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand audit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l host -d 'Only this host (repeat for more); default every host running it' -r
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l tail -d 'How many of the newest lines per host to show first (at most 5000)' -r
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l since -d 'Only instances whose output changed within this long, e.g. 1h' -r
complete -c cutover -n "__fish_cutover_using_subcommand logs" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand logs" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand logs" -s f -l follow -d 'Keep showing new lines as they come, until interrupted'
complete -c cutover -n "__fish_cutover_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand whoami" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand coordinators" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand drain" -s s -l service -d 'Only these services (default: every service on the host)' -r
complete -c cutover -n "__fish_cutover_using_subcommand drain" -s o -l output -d 'Output: `text` for people, `json` for scripts (JSON lines, one per event; docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand drain" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand drain" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drain" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drain" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drain" -l stop -d 'Also stop the services once the balancers confirmed: the stop signal, on which apps finish requests in flight and close idle keep-alive connections, then `swap.grace`. Not stopped if a balancer did not confirm within `balancer_timeout`'
complete -c cutover -n "__fish_cutover_using_subcommand drain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -s s -l service -d 'Only these services (default: every drained service on the host)' -r
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -s o -l output -d 'Output: `text` for people, `json` for scripts (JSON lines, one per event; docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand undrain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand plan" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand plan" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand plan" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand plan" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand plan" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand plan" -l include-drained -d 'As `deploy --include-drained`'
complete -c cutover -n "__fish_cutover_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l version -d 'The version being deployed (or `version` in the spec)' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l artifact -d 'Artifact URL (or `[artifact]` in the spec)' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l sha256 -d 'The artifact\'s SHA-256 (64 hex digits; `sha256:` prefix and either case accepted)' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l commit-time -d 'When the change was committed (RFC 3339, any offset, e.g. from `git log -1 --format=%cI`), for lead-time stats' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l require-success-in -d 'The promotion gate: refuse unless this version (same artifact) succeeded in ENV first. Repeatable; adds to the spec\'s `targets.requires_success_in`' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l request-id -d 'Makes the deploy safe to run again (a CI job retried after a timeout): the same ID from the same operator gets the deployment the first run started, not a second one. E.g. the CI run\'s id' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l outside-window -d 'Start it even outside the spec\'s deploy windows (`targets.windows`), saying why: the reason goes to the audit log' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -s o -l output -d 'Output: `text`, or `json`: the deployment (with --watch, one line of JSON per state until it ends)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l include-drained -d 'Also deploy to hosts where an operator drained the service (a drained instance is swapped and stays drained; one stopped by `drain --stop` gets the release, not started). Without it they are skipped and named'
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -l watch -d 'Follow the rollout until it ends; the exit code tells how'
complete -c cutover -n "__fish_cutover_using_subcommand deploy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand drift" -s l -l selector -d 'Only hosts matching this label selector' -r
complete -c cutover -n "__fish_cutover_using_subcommand drift" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand drift" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand drift" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drift" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drift" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand drift" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l service -d 'One service (default: all)' -r
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l environment -d 'One environment (default: all)' -r
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l since -d 'The window, back from now' -r
complete -c cutover -n "__fish_cutover_using_subcommand stats" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand stats" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand status" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand status" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand status" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand status" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand status" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand watch" -s o -l output -d 'Output: `text`, or `json`: one line of JSON per state until it ends (the `status -o json` schema)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand watch" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand watch" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand watch" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand watch" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand history" -l limit -d 'At most this many, newest first' -r
complete -c cutover -n "__fish_cutover_using_subcommand history" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand history" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand history" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand history" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand history" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand pause" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand pause" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand pause" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand pause" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand pause" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand resume" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand resume" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand resume" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand resume" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand resume" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand abort" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand abort" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand abort" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand abort" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand abort" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand abort" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand promote" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand promote" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand promote" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand promote" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand promote" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand promote" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand approve" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand approve" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand approve" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand approve" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand approve" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand approve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l to -d 'Default: one step back from what is live (see docs/rollouts.md)' -r
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l environment -d 'The environment to roll back in; required when the service is deployed to several' -r
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l request-id -d 'Makes the rollback safe to run again (a retried CI job): the same ID from the same operator gets the first run\'s answer' -r
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -s o -l output -d 'Output: `text`, or `json`: the deployment (with --watch, one line of JSON per state until it ends)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)' -r
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l ca -d 'The cluster CA certificate (PEM)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l identity -d 'Operator certificate and key bundle (PEM, mode 0600)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l cli-config -d 'CLI config file with `coordinator`, `ca` and `identity` (default ~/.config/cutover/cli.toml)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -l watch -d 'Follow the rollback until it ends (exit codes as deploy --watch)'
complete -c cutover -n "__fish_cutover_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand serve" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand serve" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand serve" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand serve" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand serve" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand serve" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand backup" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand backup" -l to -d 'A new (or empty) directory for the backup' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand backup" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand backup" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand backup" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand backup" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand backup" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand restore" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l from -d 'A directory `cutover backup` wrote' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand restore" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand restore" -l force -d 'Replace an existing store (it is kept beside, as `.before-restore`)'
complete -c cutover -n "__fish_cutover_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
complete -c cutover -n "__fish_cutover_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
complete -c cutover -n "__fish_cutover_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -f -a "init" -d 'Create the cluster CA, the coordinator\'s certificate and an `admin` operator'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -f -a "fingerprint" -d 'Print the CA fingerprint agents pin at enrollment'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -f -a "issue-operator" -d 'Issue an operator certificate and a CLI config for it'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -f -a "revoke-operator" -d 'Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator\'s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and not __fish_seen_subcommand_from init fingerprint issue-operator revoke-operator help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -l cluster -d 'A name for this cluster, shown in the CA certificate' -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from fingerprint" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l name -d 'The operator\'s name (in the certificate and the audit log)' -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l role -d 'admin | deployer | viewer' -r -f -a "admin\t''
deployer\t''
viewer\t''"
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l ttl -d 'Certificate lifetime (default: operator_cert_ttl from the config)' -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l out -d 'Directory for NAME.pem and NAME.toml (default: PKI_DIR/operators)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from issue-operator" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -s c -l config -d 'Coordinator config file (default /etc/cutover/coordinator.toml if present)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l name -d 'The operator whose certificates are all revoked' -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l serial -d 'One certificate\'s serial (hex, as in the audit log\'s `operator.issue` line)' -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from revoke-operator" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create the cluster CA, the coordinator\'s certificate and an `admin` operator'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "fingerprint" -d 'Print the CA fingerprint agents pin at enrollment'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "issue-operator" -d 'Issue an operator certificate and a CLI config for it'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "revoke-operator" -d 'Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator\'s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back'
complete -c cutover -n "__fish_cutover_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l socket -d 'HAProxy\'s admin socket; outside /tmp and /home, which the coordinator\'s unit hides' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l backend -d 'The backend whose servers are the service\'s hosts' -r
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l wait-up -d 'How long the live group may take to be up at HAProxy' -r
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand haproxy-switch" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand validate" -s o -l output -d 'Output: `text` for people, `json` for scripts (docs/cli-json.md)' -r -f -a "text\t'For people: tables and lines (`table` is accepted too)'
json\t'For scripts: docs/cli-json.md'"
complete -c cutover -n "__fish_cutover_using_subcommand validate" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand validate" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand validate" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand validate" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l agents -d 'Number of agents (hosts) to start' -r
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l for -d 'Keep running this long after the fleet has joined (default: stop once shown)' -r
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l dir -d 'Directory for the demo\'s files (default: a new temporary directory)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l agent-bin -d 'The cutover-agent binary (default: next to this one, then PATH)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand demo" -l keep -d 'Keep the fleet running until Ctrl-C and keep its files afterwards'
complete -c cutover -n "__fish_cutover_using_subcommand demo" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand completions" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand completions" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand completions" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand completions" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand man" -l dir -d 'The directory to write them to (created if missing)' -r -F
complete -c cutover -n "__fish_cutover_using_subcommand man" -l coordinator -r
complete -c cutover -n "__fish_cutover_using_subcommand man" -l ca -r -F
complete -c cutover -n "__fish_cutover_using_subcommand man" -l identity -r -F
complete -c cutover -n "__fish_cutover_using_subcommand man" -l cli-config -r -F
complete -c cutover -n "__fish_cutover_using_subcommand man" -s h -l help -d 'Print help'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "token" -d 'Manage join tokens for new hosts'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "hosts" -d 'List the fleet, or remove a host'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "service" -d 'One service: what is live in each environment, the deployment running now, every host that runs it (version, health, drain, drift) and the latest deployments'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "services" -d 'Every service in the fleet: on how many hosts, which releases are active where, and the hosts drained, stopped or drifted'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "audit" -d 'Show the coordinator\'s audit log, newest first'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "logs" -d 'Show a service\'s output (stdout and stderr of its instances) from the hosts running it, fetched over the agents\' sessions'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "whoami" -d 'Show which operator and role this CLI authenticates as'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "coordinators" -d 'Show the coordinators sharing the store: which leads, in which term, which are up (several coordinators on PostgreSQL; with the SQLite store, the one coordinator)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "drain" -d 'Take a host out of its load balancers (maintenance): its readiness endpoint answers 503, pre_drain hooks run, then it waits until each balancer checking the endpoint has been told "down" `balancer_fall` times (or `deregistration_delay`, as the spec\'s `[drain]` says), and says who confirmed. A swap in progress finishes first; later deployments skip the host unless --include-drained. docs/load-balancers.md'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "undrain" -d 'Put a drained host back (starting services the drain stopped)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "plan" -d 'Show the batches a spec would make against today\'s fleet'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "deploy" -d 'Deploy a spec. Exit codes with --watch: 0 succeeded, 2 failed, 3 rolled back, 4 aborted (1: could not start)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "drift" -d 'Hosts whose services differ from what Cutover deployed, and why (exit 0 either way; `-o json` for scripts)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "stats" -d 'Delivery performance (DORA): deployment frequency, lead time for changes, change failure rate, time to restore'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "status" -d 'A deployment\'s state (default: the newest)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "watch" -d 'Follow a deployment until it ends (same exit codes as deploy --watch)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "history" -d 'Deployments of a service, newest first'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "pause" -d 'Stop starting new batches of a deployment'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "resume" -d 'Go on with a paused deployment'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "abort" -d 'Stop a deployment and roll back the hosts it changed'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "promote" -d 'Promote a canary step'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "approve" -d 'Approve a deployment whose spec asks for it (`targets.approval`): it has staged everywhere and waits; an operator other than the one who submitted it lets it go on'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "rollback" -d 'Deploy an earlier successful version of a service again'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "serve" -d 'Run the coordinator daemon'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "backup" -d 'Copy the store and the PKI into a new directory, while the coordinator runs (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "restore" -d 'Put a backup in place of the store and the PKI; the coordinator must be stopped (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "config" -d 'Check the coordinator config and exit (for ExecStartPre=)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "ca" -d 'Manage the cluster CA and operator certificates (run on the coordinator host)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "haproxy-switch" -d 'A blue/green switch command for HAProxy (a spec\'s `strategy.switch`): sets the live group\'s servers of BACKEND (named after the hosts, from CUTOVER_HOSTS) `ready`, waits until HAProxy has them up, then sets every other server `drain`. Talks to HAProxy\'s admin socket (`stats socket ... level admin`). docs/load-balancers.md'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "validate" -d 'Check a deployment spec (locally; no coordinator needed)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "demo" -d 'Run a whole fleet on this machine: a coordinator, agents and a sample service'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "completions" -d 'Print the shell completion script (e.g. `cutover completions bash > /etc/bash_completion.d/cutover`)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "man" -d 'Write the manual pages (cutover.1 and one per command) into DIR'
complete -c cutover -n "__fish_cutover_using_subcommand help; and not __fish_seen_subcommand_from token hosts service services audit logs whoami coordinators drain undrain plan deploy drift stats status watch history pause resume abort promote approve rollback serve backup restore config ca haproxy-switch validate demo completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "create" -d 'Create a join token and print it with the CA fingerprint'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from hosts" -f -a "remove" -d 'Forget a host; its certificate stops working at its next connection'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from hosts" -f -a "show" -d 'One host in detail: labels, machine, agent, and every service with its releases, health, drain and drift'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "init" -d 'Create the cluster CA, the coordinator\'s certificate and an `admin` operator'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "fingerprint" -d 'Print the CA fingerprint agents pin at enrollment'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "issue-operator" -d 'Issue an operator certificate and a CLI config for it'
complete -c cutover -n "__fish_cutover_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "revoke-operator" -d 'Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator\'s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back'
