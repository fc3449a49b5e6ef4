#compdef cutover-agent

autoload -U is-at-least

_cutover-agent() {
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
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_cutover-agent_commands" \
"*::: :->cutover-agent" \
&& ret=0
    case $state in
    (cutover-agent)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-agent-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
'-c+[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'--config=[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(enroll)
_arguments "${_arguments_options[@]}" : \
'-c+[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'--config=[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'--coordinator=[Coordinator URL, e.g. https\://coordinator\:7443; several coordinators sharing a store as a comma-separated list (a standby'\''s answer is followed to the leader)]:COORDINATOR:_default' \
'(--token-file)--token=[The join token (prefer --token-file\: command lines are visible to other users)]:TOKEN:_default' \
'--token-file=[File holding the join token (\`-\` for standard input)]:TOKEN_FILE:_files' \
'--ca-fingerprint=[The cluster CA fingerprint (\`cutover ca fingerprint\` on the coordinator)]:CA_FINGERPRINT:_default' \
'--host-id=[Host id to enroll as (default\: this machine'\''s hostname)]:HOST_ID:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
'--dir=[The unpacked release directory]:DIR:_files' \
'--grace=[How long the app may take to exit on SIGTERM]:GRACE:_default' \
'-o+[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::command -- The command, relative to the release directory:_default' \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_cutover-agent__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-agent-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
'-c+[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'--config=[Agent config file (default /etc/cutover/agent.toml if present)]:CONFIG:_files' \
'-o+[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'--output=[Output\: \`text\` for people, \`json\` for scripts]:OUTPUT:((text\:"For people"
json\:"For scripts\: one JSON object"))' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover-agent__subcmd__config__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-agent-config-help-command-$line[1]:"
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
(completions)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':shell -- bash, zsh, fish, elvish or powershell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
'--dir=[The directory to write them to (created if missing)]:DIR:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_cutover-agent__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-agent-help-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(enroll)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
":: :_cutover-agent__subcmd__help__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:cutover-agent-help-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
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

(( $+functions[_cutover-agent_commands] )) ||
_cutover-agent_commands() {
    local commands; commands=(
'run:Run the agent\: keep a session to the coordinator' \
'enroll:Enroll this host with a coordinator using a join token' \
'doctor:Run a release once and say which swap modes it supports' \
'config:Check the agent config and exit (for ExecStartPre=)' \
'completions:Print the shell completion script (e.g. \`cutover-agent completions bash > /etc/bash_completion.d/cutover-agent\`)' \
'man:Write the manual pages (cutover-agent.1 and one per command) into DIR' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover-agent commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__completions_commands] )) ||
_cutover-agent__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent completions commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__config_commands] )) ||
_cutover-agent__subcmd__config_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover-agent config commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__config__subcmd__check_commands] )) ||
_cutover-agent__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent config check commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__config__subcmd__help_commands] )) ||
_cutover-agent__subcmd__config__subcmd__help_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover-agent config help commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__config__subcmd__help__subcmd__check_commands] )) ||
_cutover-agent__subcmd__config__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent config help check commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__config__subcmd__help__subcmd__help_commands] )) ||
_cutover-agent__subcmd__config__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent config help help commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__doctor_commands] )) ||
_cutover-agent__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent doctor commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__enroll_commands] )) ||
_cutover-agent__subcmd__enroll_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent enroll commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help_commands] )) ||
_cutover-agent__subcmd__help_commands() {
    local commands; commands=(
'run:Run the agent\: keep a session to the coordinator' \
'enroll:Enroll this host with a coordinator using a join token' \
'doctor:Run a release once and say which swap modes it supports' \
'config:Check the agent config and exit (for ExecStartPre=)' \
'completions:Print the shell completion script (e.g. \`cutover-agent completions bash > /etc/bash_completion.d/cutover-agent\`)' \
'man:Write the manual pages (cutover-agent.1 and one per command) into DIR' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'cutover-agent help commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__completions_commands] )) ||
_cutover-agent__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help completions commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__config_commands] )) ||
_cutover-agent__subcmd__help__subcmd__config_commands() {
    local commands; commands=(
'check:Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)' \
    )
    _describe -t commands 'cutover-agent help config commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__config__subcmd__check_commands] )) ||
_cutover-agent__subcmd__help__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help config check commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__doctor_commands] )) ||
_cutover-agent__subcmd__help__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help doctor commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__enroll_commands] )) ||
_cutover-agent__subcmd__help__subcmd__enroll_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help enroll commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__help_commands] )) ||
_cutover-agent__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help help commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__man_commands] )) ||
_cutover-agent__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help man commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__help__subcmd__run_commands] )) ||
_cutover-agent__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent help run commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__man_commands] )) ||
_cutover-agent__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent man commands' commands "$@"
}
(( $+functions[_cutover-agent__subcmd__run_commands] )) ||
_cutover-agent__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'cutover-agent run commands' commands "$@"
}

if [ "$funcstack[1]" = "_cutover-agent" ]; then
    _cutover-agent "$@"
else
    compdef _cutover-agent cutover-agent
fi
