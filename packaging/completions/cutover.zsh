#compdef cutover

autoload -U is-at-least

_cutover() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_cutover_commands" \
"*::: :->cutover" \
&& ret=0
    case $state in
    (cutover)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-command-$line[1]:"
        case $line[1] in
            (token)
_arguments "${_arguments_options[@]}" : \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_cutover__subcmd__token_commands" \
"*::: :->token" \
&& ret=0

    case $state in
    (token)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-token-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
'--ttl=[How long the token stays valid]:TTL:_default' \
'--uses=[How many hosts may enroll with it]:USES:_default' \
'--labels=[Labels bound to every host that enrolls with it (k=v,k2=v2)]:LABELS:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__token__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-token-help-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(hosts)
_arguments "${_arguments_options[@]}" : \
'-l+[Only hosts matching this label selector (e.g. role=web,zone!=b)]:SELECTOR:_default' \
'--selector=[Only hosts matching this label selector (e.g. role=web,zone!=b)]:SELECTOR:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
":: :_cutover__subcmd__hosts_commands" \
"*::: :->hosts" \
&& ret=0

    case $state in
    (hosts)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-hosts-command-$line[1]:"
        case $line[1] in
            (remove)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':host -- The host'\''s id (see `cutover hosts`):_default' \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':host -- The host'\''s id (see `cutover hosts`):_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__hosts__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-hosts-help-command-$line[1]:"
        case $line[1] in
            (remove)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(service)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':service -- The service:_default' \
&& ret=0
;;
(services)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(audit)
_arguments "${_arguments_options[@]}" : \
'--limit=[At most this many entries, newest first]:LIMIT:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
'*--host=[Only this host (repeat for more); default every host running it]:HOSTS:_default' \
'--tail=[How many of the newest lines per host to show first (at most 5000)]:TAIL:_default' \
'--since=[Only instances whose output changed within this long, e.g. 1h]:SINCE:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-f[Keep showing new lines as they come, until interrupted]' \
'--follow[Keep showing new lines as they come, until interrupted]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':service -- The service:_default' \
&& ret=0
;;
(whoami)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(coordinators)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(drain)
_arguments "${_arguments_options[@]}" : \
'*-s+[Only these services (default\: every service on the host)]:SERVICES:_default' \
'*--service=[Only these services (default\: every service on the host)]:SERVICES:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (JSON lines, one per event; docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (JSON lines, one per event; docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'--stop[Also stop the services once the balancers confirmed\: the stop signal, on which apps finish requests in flight and close idle keep-alive connections, then \`swap.grace\`. Not stopped if a balancer did not confirm within \`balancer_timeout\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':host -- The host'\''s id (see `cutover hosts`):_default' \
&& ret=0
;;
(undrain)
_arguments "${_arguments_options[@]}" : \
'*-s+[Only these services (default\: every drained service on the host)]:SERVICES:_default' \
'*--service=[Only these services (default\: every drained service on the host)]:SERVICES:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (JSON lines, one per event; docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (JSON lines, one per event; docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':host -- The host'\''s id (see `cutover hosts`):_default' \
&& ret=0
;;
(plan)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'--include-drained[As \`deploy --include-drained\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':file -- The deployment spec (TOML):_files' \
&& ret=0
;;
(deploy)
_arguments "${_arguments_options[@]}" : \
'--version=[The version being deployed (or \`version\` in the spec)]:VERSION:_default' \
'--artifact=[Artifact URL (or \`\[artifact\]\` in the spec)]:ARTIFACT:_default' \
'--sha256=[The artifact'\''s SHA-256 (64 hex digits; \`sha256\:\` prefix and either case accepted)]:SHA256:_default' \
'--commit-time=[When the change was committed (RFC 3339, any offset, e.g. from \`git log -1 --format=%cI\`), for lead-time stats]:COMMIT_TIME:_default' \
'*--require-success-in=[The promotion gate\: refuse unless this version (same artifact) succeeded in ENV first. Repeatable; adds to the spec'\''s \`targets.requires_success_in\`]:ENV:_default' \
'--request-id=[Makes the deploy safe to run again (a CI job retried after a timeout)\: the same ID from the same operator gets the deployment the first run started, not a second one. E.g. the CI run'\''s id]:ID:_default' \
'--outside-window=[Start it even outside the spec'\''s deploy windows (\`targets.windows\`), saying why\: the reason goes to the audit log]:REASON:_default' \
'-o+[Output\: \`text\`, or \`json\`\: the deployment (with --watch, one line of JSON per state until it ends)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\`, or \`json\`\: the deployment (with --watch, one line of JSON per state until it ends)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'--include-drained[Also deploy to hosts where an operator drained the service (a drained instance is swapped and stays drained; one stopped by \`drain --stop\` gets the release, not started). Without it they are skipped and named]' \
'--watch[Follow the rollout until it ends; the exit code tells how]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':file -- The deployment spec (TOML):_files' \
&& ret=0
;;
(drift)
_arguments "${_arguments_options[@]}" : \
'-l+[Only hosts matching this label selector]:SELECTOR:_default' \
'--selector=[Only hosts matching this label selector]:SELECTOR:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(stats)
_arguments "${_arguments_options[@]}" : \
'--service=[One service (default\: all)]:SERVICE:_default' \
'--environment=[One environment (default\: all)]:ENVIRONMENT:_default' \
'--since=[The window, back from now]:SINCE:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'::id -- A deployment id (d42; see `cutover history SERVICE`):_default' \
&& ret=0
;;
(watch)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\`, or \`json\`\: one line of JSON per state until it ends (the \`status -o json\` schema)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\`, or \`json\`\: one line of JSON per state until it ends (the \`status -o json\` schema)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(history)
_arguments "${_arguments_options[@]}" : \
'--limit=[At most this many, newest first]:LIMIT:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':service -- The service:_default' \
&& ret=0
;;
(pause)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(abort)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(promote)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(approve)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- A deployment id (d42):_default' \
&& ret=0
;;
(rollback)
_arguments "${_arguments_options[@]}" : \
'--to=[Default\: one step back from what is live (see docs/rollouts.md)]:TO:_default' \
'--environment=[The environment to roll back in; required when the service is deployed to several]:NAME:_default' \
'--request-id=[Makes the rollback safe to run again (a retried CI job)\: the same ID from the same operator gets the first run'\''s answer]:ID:_default' \
'-o+[Output\: \`text\`, or \`json\`\: the deployment (with --watch, one line of JSON per state until it ends)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\`, or \`json\`\: the deployment (with --watch, one line of JSON per state until it ends)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (the leader is found and followed)]:COORDINATOR:_default' \
'--ca=[The cluster CA certificate (PEM)]:CA:_files' \
'--identity=[Operator certificate and key bundle (PEM, mode 0600)]:IDENTITY:_files' \
'--cli-config=[CLI config file with \`coordinator\`, \`ca\` and \`identity\` (default ~/.config/cutover/cli.toml)]:CLI_CONFIG:_files' \
'--watch[Follow the rollback until it ends (exit codes as deploy --watch)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':service -- The service to roll back:_default' \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(backup)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--to=[A new (or empty) directory for the backup]:DIR:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(restore)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--from=[A directory \`cutover backup\` wrote]:DIR:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'--force[Replace an existing store (it is kept beside, as \`.before-restore\`)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_cutover__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__config__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-config-help-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(ca)
_arguments "${_arguments_options[@]}" : \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_cutover__subcmd__ca_commands" \
"*::: :->ca" \
&& ret=0

    case $state in
    (ca)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-ca-command-$line[1]:"
        case $line[1] in
            (init)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--cluster=[A name for this cluster, shown in the CA certificate]:CLUSTER:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(fingerprint)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(issue-operator)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--name=[The operator'\''s name (in the certificate and the audit log)]:NAME:_default' \
'--role=[admin | deployer | viewer]:ROLE:(admin deployer viewer)' \
'--ttl=[Certificate lifetime (default\: operator_cert_ttl from the config)]:TTL:_default' \
'--out=[Directory for NAME.pem and NAME.toml (default\: PKI_DIR/operators)]:OUT:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(revoke-operator)
_arguments "${_arguments_options[@]}" : \
'-c+[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--config=[Coordinator config file (default /etc/cutover/coordinator.toml if present)]:CONFIG:_files' \
'--name=[The operator whose certificates are all revoked]:NAME:_default' \
'--serial=[One certificate'\''s serial (hex, as in the audit log'\''s \`operator.issue\` line)]:SERIAL:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__ca__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-ca-help-command-$line[1]:"
        case $line[1] in
            (init)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(fingerprint)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(issue-operator)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revoke-operator)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(haproxy-switch)
_arguments "${_arguments_options[@]}" : \
'--socket=[HAProxy'\''s admin socket; outside /tmp and /home, which the coordinator'\''s unit hides]:SOCKET:_files' \
'--backend=[The backend whose servers are the service'\''s hosts]:BACKEND:_default' \
'--wait-up=[How long the live group may take to be up at HAProxy]:WAIT_UP:_default' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(validate)
_arguments "${_arguments_options[@]}" : \
'-o+[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts (docs/cli-json.md)]:OUTPUT:((text\:"For people\: tables and lines (\`table\` is accepted too)"
json\:"For scripts\: docs/cli-json.md"))' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':file -- The deployment spec (TOML; docs/spec-reference.md):_files' \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
'--agents=[Number of agents (hosts) to start]:AGENTS:_default' \
'--for=[Keep running this long after the fleet has joined (default\: stop once shown)]:RUN_FOR:_default' \
'--dir=[Directory for the demo'\''s files (default\: a new temporary directory)]:DIR:_files' \
'--agent-bin=[The cutover-agent binary (default\: next to this one, then PATH)]:AGENT_BIN:_files' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'--keep[Keep the fleet running until Ctrl-C and keep its files afterwards]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
':shell -- bash, zsh, fish, elvish or powershell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
'--dir=[The directory to write them to (created if missing)]:DIR:_files' \
'--coordinator=[]: :_default' \
'--ca=[]: :_files' \
'--identity=[]: :_files' \
'--cli-config=[]: :_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-help-command-$line[1]:"
        case $line[1] in
            (token)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__help__subcmd__token_commands" \
"*::: :->token" \
&& ret=0

    case $state in
    (token)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-help-token-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(hosts)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__help__subcmd__hosts_commands" \
"*::: :->hosts" \
&& ret=0

    case $state in
    (hosts)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-help-hosts-command-$line[1]:"
        case $line[1] in
            (remove)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(service)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(services)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(audit)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(whoami)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(coordinators)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(drain)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(undrain)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(plan)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(deploy)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(drift)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(stats)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(watch)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(history)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(pause)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(abort)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(promote)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(approve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(rollback)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(backup)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(restore)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__help__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-help-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(ca)
_arguments "${_arguments_options[@]}" : \
":: :_cutover__subcmd__help__subcmd__ca_commands" \
"*::: :->ca" \
&& ret=0

    case $state in
    (ca)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-help-ca-command-$line[1]:"
        case $line[1] in
            (init)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(fingerprint)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(issue-operator)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revoke-operator)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(haproxy-switch)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(validate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_cutover_commands] )) ||
_cutover_commands() {
    local commands; commands=(
'token:Manage join tokens for new hosts' \
'hosts:List the fleet, or remove a host' \
'service:One service\: what is live in each environment, the deployment running now, every host that runs it (version, health, drain, drift) and the latest deployments' \
'services:Every service in the fleet\: on how many hosts, which releases are active where, and the hosts drained, stopped or drifted' \
'audit:Show the coordinator'\''s audit log, newest first' \
'logs:Show a service'\''s output (stdout and stderr of its instances) from the hosts running it, fetched over the agents'\'' sessions' \
'whoami:Show which operator and role this CLI authenticates as' \
'coordinators:Show the coordinators sharing the store\: which leads, in which term, which are up (several coordinators on PostgreSQL; with the SQLite store, the one coordinator)' \
'drain:Take a host out of its load balancers (maintenance)\: its readiness endpoint answers 503, pre_drain hooks run, then it waits until each balancer checking the endpoint has been told "down" \`balancer_fall\` times (or \`deregistration_delay\`, as the spec'\''s \`\[drain\]\` says), and says who confirmed. A swap in progress finishes first; later deployments skip the host unless --include-drained. docs/load-balancers.md' \
'undrain:Put a drained host back (starting services the drain stopped)' \
'plan:Show the batches a spec would make against today'\''s fleet' \
'deploy:Deploy a spec. Exit codes with --watch\: 0 succeeded, 2 failed, 3 rolled back, 4 aborted (1\: could not start)' \
'drift:Hosts whose services differ from what Cutover deployed, and why (exit 0 either way; \`-o json\` for scripts)' \
'stats:Delivery performance (DORA)\: deployment frequency, lead time for changes, change failure rate, time to restore' \
'status:A deployment'\''s state (default\: the newest)' \
'watch:Follow a deployment until it ends (same exit codes as deploy --watch)' \
'history:Deployments of a service, newest first' \
'pause:Stop starting new batches of a deployment' \
'resume:Go on with a paused deployment' \
'abort:Stop a deployment and roll back the hosts it changed' \
'promote:Promote a canary step' \
'approve:Approve a deployment whose spec asks for it (\`targets.approval\`)\: it has staged everywhere and waits; an operator other than the one who submitted it lets it go on' \
'rollback:Deploy an earlier successful version of a service again' \
'serve:Run the coordinator daemon' \
'backup:Copy the store and the PKI into a new directory, while the coordinator runs (run on the coordinator host)' \
'restore:Put a backup in place of the store and the PKI; the coordinator must be stopped (run on the coordinator host)' \
'config:Check the coordinator config and exit (for ExecStartPre=)' \
'ca:Manage the cluster CA and operator certificates (run on the coordinator host)' \
'haproxy-switch:A blue/green switch command for HAProxy (a spec'\''s \`strategy.switch\`)\: sets the live group'\''s servers of BACKEND (named after the hosts, from CUTOVER_HOSTS) \`ready\`, waits until HAProxy has them up, then sets every other server \`drain\`. Talks to HAProxy'\''s admin socket (\`stats socket ... level admin\`). docs/load-balancers.md' \
'validate:Check a deployment spec (locally; no coordinator needed)' \
'demo:Run a whole fleet on this machine\: a coordinator, agents and a sample service' \
'completions:Print the shell completion script (e.g. \`cutover completions bash > /etc/bash_completion.d/cutover\`)' \
'man:Write the manual pages (cutover.1 and one per command) into DIR' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover commands' commands "$@"
}
(( $+functions[_cutover__subcmd__abort_commands] )) ||
_cutover__subcmd__abort_commands() {
    local commands; commands=()
    _describe -t commands 'cutover abort commands' commands "$@"
}
(( $+functions[_cutover__subcmd__approve_commands] )) ||
_cutover__subcmd__approve_commands() {
    local commands; commands=()
    _describe -t commands 'cutover approve commands' commands "$@"
}
(( $+functions[_cutover__subcmd__audit_commands] )) ||
_cutover__subcmd__audit_commands() {
    local commands; commands=()
    _describe -t commands 'cutover audit commands' commands "$@"
}
(( $+functions[_cutover__subcmd__backup_commands] )) ||
_cutover__subcmd__backup_commands() {
    local commands; commands=()
    _describe -t commands 'cutover backup commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca_commands] )) ||
_cutover__subcmd__ca_commands() {
    local commands; commands=(
'init:Create the cluster CA, the coordinator'\''s certificate and an \`admin\` operator' \
'fingerprint:Print the CA fingerprint agents pin at enrollment' \
'issue-operator:Issue an operator certificate and a CLI config for it' \
'revoke-operator:Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator'\''s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover ca commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__fingerprint_commands] )) ||
_cutover__subcmd__ca__subcmd__fingerprint_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca fingerprint commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help_commands] )) ||
_cutover__subcmd__ca__subcmd__help_commands() {
    local commands; commands=(
'init:Create the cluster CA, the coordinator'\''s certificate and an \`admin\` operator' \
'fingerprint:Print the CA fingerprint agents pin at enrollment' \
'issue-operator:Issue an operator certificate and a CLI config for it' \
'revoke-operator:Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator'\''s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover ca help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help__subcmd__fingerprint_commands] )) ||
_cutover__subcmd__ca__subcmd__help__subcmd__fingerprint_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca help fingerprint commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help__subcmd__help_commands] )) ||
_cutover__subcmd__ca__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca help help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help__subcmd__init_commands] )) ||
_cutover__subcmd__ca__subcmd__help__subcmd__init_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca help init commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help__subcmd__issue-operator_commands] )) ||
_cutover__subcmd__ca__subcmd__help__subcmd__issue-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca help issue-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__help__subcmd__revoke-operator_commands] )) ||
_cutover__subcmd__ca__subcmd__help__subcmd__revoke-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca help revoke-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__init_commands] )) ||
_cutover__subcmd__ca__subcmd__init_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca init commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__issue-operator_commands] )) ||
_cutover__subcmd__ca__subcmd__issue-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca issue-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__ca__subcmd__revoke-operator_commands] )) ||
_cutover__subcmd__ca__subcmd__revoke-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover ca revoke-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__completions_commands] )) ||
_cutover__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'cutover completions commands' commands "$@"
}
(( $+functions[_cutover__subcmd__config_commands] )) ||
_cutover__subcmd__config_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover config commands' commands "$@"
}
(( $+functions[_cutover__subcmd__config__subcmd__check_commands] )) ||
_cutover__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover config check commands' commands "$@"
}
(( $+functions[_cutover__subcmd__config__subcmd__help_commands] )) ||
_cutover__subcmd__config__subcmd__help_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover config help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__config__subcmd__help__subcmd__check_commands] )) ||
_cutover__subcmd__config__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover config help check commands' commands "$@"
}
(( $+functions[_cutover__subcmd__config__subcmd__help__subcmd__help_commands] )) ||
_cutover__subcmd__config__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover config help help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__coordinators_commands] )) ||
_cutover__subcmd__coordinators_commands() {
    local commands; commands=()
    _describe -t commands 'cutover coordinators commands' commands "$@"
}
(( $+functions[_cutover__subcmd__demo_commands] )) ||
_cutover__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'cutover demo commands' commands "$@"
}
(( $+functions[_cutover__subcmd__deploy_commands] )) ||
_cutover__subcmd__deploy_commands() {
    local commands; commands=()
    _describe -t commands 'cutover deploy commands' commands "$@"
}
(( $+functions[_cutover__subcmd__drain_commands] )) ||
_cutover__subcmd__drain_commands() {
    local commands; commands=()
    _describe -t commands 'cutover drain commands' commands "$@"
}
(( $+functions[_cutover__subcmd__drift_commands] )) ||
_cutover__subcmd__drift_commands() {
    local commands; commands=()
    _describe -t commands 'cutover drift commands' commands "$@"
}
(( $+functions[_cutover__subcmd__haproxy-switch_commands] )) ||
_cutover__subcmd__haproxy-switch_commands() {
    local commands; commands=()
    _describe -t commands 'cutover haproxy-switch commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help_commands] )) ||
_cutover__subcmd__help_commands() {
    local commands; commands=(
'token:Manage join tokens for new hosts' \
'hosts:List the fleet, or remove a host' \
'service:One service\: what is live in each environment, the deployment running now, every host that runs it (version, health, drain, drift) and the latest deployments' \
'services:Every service in the fleet\: on how many hosts, which releases are active where, and the hosts drained, stopped or drifted' \
'audit:Show the coordinator'\''s audit log, newest first' \
'logs:Show a service'\''s output (stdout and stderr of its instances) from the hosts running it, fetched over the agents'\'' sessions' \
'whoami:Show which operator and role this CLI authenticates as' \
'coordinators:Show the coordinators sharing the store\: which leads, in which term, which are up (several coordinators on PostgreSQL; with the SQLite store, the one coordinator)' \
'drain:Take a host out of its load balancers (maintenance)\: its readiness endpoint answers 503, pre_drain hooks run, then it waits until each balancer checking the endpoint has been told "down" \`balancer_fall\` times (or \`deregistration_delay\`, as the spec'\''s \`\[drain\]\` says), and says who confirmed. A swap in progress finishes first; later deployments skip the host unless --include-drained. docs/load-balancers.md' \
'undrain:Put a drained host back (starting services the drain stopped)' \
'plan:Show the batches a spec would make against today'\''s fleet' \
'deploy:Deploy a spec. Exit codes with --watch\: 0 succeeded, 2 failed, 3 rolled back, 4 aborted (1\: could not start)' \
'drift:Hosts whose services differ from what Cutover deployed, and why (exit 0 either way; \`-o json\` for scripts)' \
'stats:Delivery performance (DORA)\: deployment frequency, lead time for changes, change failure rate, time to restore' \
'status:A deployment'\''s state (default\: the newest)' \
'watch:Follow a deployment until it ends (same exit codes as deploy --watch)' \
'history:Deployments of a service, newest first' \
'pause:Stop starting new batches of a deployment' \
'resume:Go on with a paused deployment' \
'abort:Stop a deployment and roll back the hosts it changed' \
'promote:Promote a canary step' \
'approve:Approve a deployment whose spec asks for it (\`targets.approval\`)\: it has staged everywhere and waits; an operator other than the one who submitted it lets it go on' \
'rollback:Deploy an earlier successful version of a service again' \
'serve:Run the coordinator daemon' \
'backup:Copy the store and the PKI into a new directory, while the coordinator runs (run on the coordinator host)' \
'restore:Put a backup in place of the store and the PKI; the coordinator must be stopped (run on the coordinator host)' \
'config:Check the coordinator config and exit (for ExecStartPre=)' \
'ca:Manage the cluster CA and operator certificates (run on the coordinator host)' \
'haproxy-switch:A blue/green switch command for HAProxy (a spec'\''s \`strategy.switch\`)\: sets the live group'\''s servers of BACKEND (named after the hosts, from CUTOVER_HOSTS) \`ready\`, waits until HAProxy has them up, then sets every other server \`drain\`. Talks to HAProxy'\''s admin socket (\`stats socket ... level admin\`). docs/load-balancers.md' \
'validate:Check a deployment spec (locally; no coordinator needed)' \
'demo:Run a whole fleet on this machine\: a coordinator, agents and a sample service' \
'completions:Print the shell completion script (e.g. \`cutover completions bash > /etc/bash_completion.d/cutover\`)' \
'man:Write the manual pages (cutover.1 and one per command) into DIR' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__abort_commands] )) ||
_cutover__subcmd__help__subcmd__abort_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help abort commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__approve_commands] )) ||
_cutover__subcmd__help__subcmd__approve_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help approve commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__audit_commands] )) ||
_cutover__subcmd__help__subcmd__audit_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help audit commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__backup_commands] )) ||
_cutover__subcmd__help__subcmd__backup_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help backup commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__ca_commands] )) ||
_cutover__subcmd__help__subcmd__ca_commands() {
    local commands; commands=(
'init:Create the cluster CA, the coordinator'\''s certificate and an \`admin\` operator' \
'fingerprint:Print the CA fingerprint agents pin at enrollment' \
'issue-operator:Issue an operator certificate and a CLI config for it' \
'revoke-operator:Revoke an operator (every certificate of the name) or one certificate by serial. Takes effect on the operator'\''s next call, also on a running coordinator; re-issuing the name later never brings a revoked certificate back' \
    )
    _describe -t commands 'cutover help ca commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__ca__subcmd__fingerprint_commands] )) ||
_cutover__subcmd__help__subcmd__ca__subcmd__fingerprint_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help ca fingerprint commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__ca__subcmd__init_commands] )) ||
_cutover__subcmd__help__subcmd__ca__subcmd__init_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help ca init commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__ca__subcmd__issue-operator_commands] )) ||
_cutover__subcmd__help__subcmd__ca__subcmd__issue-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help ca issue-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__ca__subcmd__revoke-operator_commands] )) ||
_cutover__subcmd__help__subcmd__ca__subcmd__revoke-operator_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help ca revoke-operator commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__completions_commands] )) ||
_cutover__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help completions commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__config_commands] )) ||
_cutover__subcmd__help__subcmd__config_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
    )
    _describe -t commands 'cutover help config commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__config__subcmd__check_commands] )) ||
_cutover__subcmd__help__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help config check commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__coordinators_commands] )) ||
_cutover__subcmd__help__subcmd__coordinators_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help coordinators commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__demo_commands] )) ||
_cutover__subcmd__help__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help demo commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__deploy_commands] )) ||
_cutover__subcmd__help__subcmd__deploy_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help deploy commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__drain_commands] )) ||
_cutover__subcmd__help__subcmd__drain_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help drain commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__drift_commands] )) ||
_cutover__subcmd__help__subcmd__drift_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help drift commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__haproxy-switch_commands] )) ||
_cutover__subcmd__help__subcmd__haproxy-switch_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help haproxy-switch commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__help_commands] )) ||
_cutover__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__history_commands] )) ||
_cutover__subcmd__help__subcmd__history_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help history commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__hosts_commands] )) ||
_cutover__subcmd__help__subcmd__hosts_commands() {
    local commands; commands=(
'remove:Forget a host; its certificate stops working at its next connection' \
'show:One host in detail\: labels, machine, agent, and every service with its releases, health, drain and drift' \
    )
    _describe -t commands 'cutover help hosts commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__hosts__subcmd__remove_commands] )) ||
_cutover__subcmd__help__subcmd__hosts__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help hosts remove commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__hosts__subcmd__show_commands] )) ||
_cutover__subcmd__help__subcmd__hosts__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help hosts show commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__logs_commands] )) ||
_cutover__subcmd__help__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help logs commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__man_commands] )) ||
_cutover__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help man commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__pause_commands] )) ||
_cutover__subcmd__help__subcmd__pause_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help pause commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__plan_commands] )) ||
_cutover__subcmd__help__subcmd__plan_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help plan commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__promote_commands] )) ||
_cutover__subcmd__help__subcmd__promote_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help promote commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__restore_commands] )) ||
_cutover__subcmd__help__subcmd__restore_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help restore commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__resume_commands] )) ||
_cutover__subcmd__help__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help resume commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__rollback_commands] )) ||
_cutover__subcmd__help__subcmd__rollback_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help rollback commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__serve_commands] )) ||
_cutover__subcmd__help__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help serve commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__service_commands] )) ||
_cutover__subcmd__help__subcmd__service_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help service commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__services_commands] )) ||
_cutover__subcmd__help__subcmd__services_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help services commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__stats_commands] )) ||
_cutover__subcmd__help__subcmd__stats_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help stats commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__status_commands] )) ||
_cutover__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help status commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__token_commands] )) ||
_cutover__subcmd__help__subcmd__token_commands() {
    local commands; commands=(
'create:Create a join token and print it with the CA fingerprint' \
    )
    _describe -t commands 'cutover help token commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__token__subcmd__create_commands] )) ||
_cutover__subcmd__help__subcmd__token__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help token create commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__undrain_commands] )) ||
_cutover__subcmd__help__subcmd__undrain_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help undrain commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__validate_commands] )) ||
_cutover__subcmd__help__subcmd__validate_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help validate commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__watch_commands] )) ||
_cutover__subcmd__help__subcmd__watch_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help watch commands' commands "$@"
}
(( $+functions[_cutover__subcmd__help__subcmd__whoami_commands] )) ||
_cutover__subcmd__help__subcmd__whoami_commands() {
    local commands; commands=()
    _describe -t commands 'cutover help whoami commands' commands "$@"
}
(( $+functions[_cutover__subcmd__history_commands] )) ||
_cutover__subcmd__history_commands() {
    local commands; commands=()
    _describe -t commands 'cutover history commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts_commands] )) ||
_cutover__subcmd__hosts_commands() {
    local commands; commands=(
'remove:Forget a host; its certificate stops working at its next connection' \
'show:One host in detail\: labels, machine, agent, and every service with its releases, health, drain and drift' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover hosts commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__help_commands] )) ||
_cutover__subcmd__hosts__subcmd__help_commands() {
    local commands; commands=(
'remove:Forget a host; its certificate stops working at its next connection' \
'show:One host in detail\: labels, machine, agent, and every service with its releases, health, drain and drift' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover hosts help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__help__subcmd__help_commands] )) ||
_cutover__subcmd__hosts__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover hosts help help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__help__subcmd__remove_commands] )) ||
_cutover__subcmd__hosts__subcmd__help__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'cutover hosts help remove commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__help__subcmd__show_commands] )) ||
_cutover__subcmd__hosts__subcmd__help__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'cutover hosts help show commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__remove_commands] )) ||
_cutover__subcmd__hosts__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'cutover hosts remove commands' commands "$@"
}
(( $+functions[_cutover__subcmd__hosts__subcmd__show_commands] )) ||
_cutover__subcmd__hosts__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'cutover hosts show commands' commands "$@"
}
(( $+functions[_cutover__subcmd__logs_commands] )) ||
_cutover__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'cutover logs commands' commands "$@"
}
(( $+functions[_cutover__subcmd__man_commands] )) ||
_cutover__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'cutover man commands' commands "$@"
}
(( $+functions[_cutover__subcmd__pause_commands] )) ||
_cutover__subcmd__pause_commands() {
    local commands; commands=()
    _describe -t commands 'cutover pause commands' commands "$@"
}
(( $+functions[_cutover__subcmd__plan_commands] )) ||
_cutover__subcmd__plan_commands() {
    local commands; commands=()
    _describe -t commands 'cutover plan commands' commands "$@"
}
(( $+functions[_cutover__subcmd__promote_commands] )) ||
_cutover__subcmd__promote_commands() {
    local commands; commands=()
    _describe -t commands 'cutover promote commands' commands "$@"
}
(( $+functions[_cutover__subcmd__restore_commands] )) ||
_cutover__subcmd__restore_commands() {
    local commands; commands=()
    _describe -t commands 'cutover restore commands' commands "$@"
}
(( $+functions[_cutover__subcmd__resume_commands] )) ||
_cutover__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'cutover resume commands' commands "$@"
}
(( $+functions[_cutover__subcmd__rollback_commands] )) ||
_cutover__subcmd__rollback_commands() {
    local commands; commands=()
    _describe -t commands 'cutover rollback commands' commands "$@"
}
(( $+functions[_cutover__subcmd__serve_commands] )) ||
_cutover__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'cutover serve commands' commands "$@"
}
(( $+functions[_cutover__subcmd__service_commands] )) ||
_cutover__subcmd__service_commands() {
    local commands; commands=()
    _describe -t commands 'cutover service commands' commands "$@"
}
(( $+functions[_cutover__subcmd__services_commands] )) ||
_cutover__subcmd__services_commands() {
    local commands; commands=()
    _describe -t commands 'cutover services commands' commands "$@"
}
(( $+functions[_cutover__subcmd__stats_commands] )) ||
_cutover__subcmd__stats_commands() {
    local commands; commands=()
    _describe -t commands 'cutover stats commands' commands "$@"
}
(( $+functions[_cutover__subcmd__status_commands] )) ||
_cutover__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'cutover status commands' commands "$@"
}
(( $+functions[_cutover__subcmd__token_commands] )) ||
_cutover__subcmd__token_commands() {
    local commands; commands=(
'create:Create a join token and print it with the CA fingerprint' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover token commands' commands "$@"
}
(( $+functions[_cutover__subcmd__token__subcmd__create_commands] )) ||
_cutover__subcmd__token__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'cutover token create commands' commands "$@"
}
(( $+functions[_cutover__subcmd__token__subcmd__help_commands] )) ||
_cutover__subcmd__token__subcmd__help_commands() {
    local commands; commands=(
'create:Create a join token and print it with the CA fingerprint' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover token help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__token__subcmd__help__subcmd__create_commands] )) ||
_cutover__subcmd__token__subcmd__help__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'cutover token help create commands' commands "$@"
}
(( $+functions[_cutover__subcmd__token__subcmd__help__subcmd__help_commands] )) ||
_cutover__subcmd__token__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover token help help commands' commands "$@"
}
(( $+functions[_cutover__subcmd__undrain_commands] )) ||
_cutover__subcmd__undrain_commands() {
    local commands; commands=()
    _describe -t commands 'cutover undrain commands' commands "$@"
}
(( $+functions[_cutover__subcmd__validate_commands] )) ||
_cutover__subcmd__validate_commands() {
    local commands; commands=()
    _describe -t commands 'cutover validate commands' commands "$@"
}
(( $+functions[_cutover__subcmd__watch_commands] )) ||
_cutover__subcmd__watch_commands() {
    local commands; commands=()
    _describe -t commands 'cutover watch commands' commands "$@"
}
(( $+functions[_cutover__subcmd__whoami_commands] )) ||
_cutover__subcmd__whoami_commands() {
    local commands; commands=()
    _describe -t commands 'cutover whoami commands' commands "$@"
}

if [ "$funcstack[1]" = "_cutover" ]; then
    _cutover "$@"
else
    compdef _cutover cutover
fi
