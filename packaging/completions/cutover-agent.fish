# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cutover_agent_global_optspecs
    string join \n h/help V/version
end

function __fish_cutover_agent_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cutover_agent_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cutover_agent_using_subcommand
    set -l cmd (__fish_cutover_agent_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -s h -l help -d 'Print help'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "run" -d 'Run the agent: keep a session to the coordinator'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "enroll" -d 'Enroll this host with a coordinator using a join token'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "doctor" -d 'Run a release once and say which swap modes it supports'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "config" -d 'Check the agent config and exit (for ExecStartPre=)'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "completions" -d 'Print the shell completion script (e.g. `cutover-agent completions bash > /etc/bash_completion.d/cutover-agent`)'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "man" -d 'Write the manual pages (cutover-agent.1 and one per command) into DIR'
complete -c cutover-agent -n "__fish_cutover_agent_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand run" -s c -l config -d 'Agent config file (default /etc/cutover/agent.toml if present)' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand run" -s h -l help -d 'Print help'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand run" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -s c -l config -d 'Agent config file (default /etc/cutover/agent.toml if present)' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -l coordinator -d 'Coordinator URL, e.g. https://coordinator:7443; several coordinators sharing a store as a comma-separated list (a standby\'s answer is followed to the leader)' -r
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -l token -d 'The join token (prefer --token-file: command lines are visible to other users)' -r
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -l token-file -d 'File holding the join token (`-` for standard input)' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -l ca-fingerprint -d 'The cluster CA fingerprint (`cutover ca fingerprint` on the coordinator)' -r
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -l host-id -d 'Host id to enroll as (default: this machine\'s hostname)' -r
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -s o -l output -d 'Output: `text` for people, `json` for scripts' -r -f -a "text\t'For people'
json\t'For scripts: one JSON object'"
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand enroll" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand doctor" -l dir -d 'The unpacked release directory' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand doctor" -l grace -d 'How long the app may take to exit on SIGTERM' -r
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand doctor" -s o -l output -d 'Output: `text` for people, `json` for scripts' -r -f -a "text\t'For people'
json\t'For scripts: one JSON object'"
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and not __fish_seen_subcommand_from check help" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'Agent config file (default /etc/cutover/agent.toml if present)' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from check" -s o -l output -d 'Output: `text` for people, `json` for scripts' -r -f -a "text\t'For people'
json\t'For scripts: one JSON object'"
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand man" -l dir -d 'The directory to write them to (created if missing)' -r -F
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand man" -s h -l help -d 'Print help'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand man" -s V -l version -d 'Print version'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "run" -d 'Run the agent: keep a session to the coordinator'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "enroll" -d 'Enroll this host with a coordinator using a join token'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "doctor" -d 'Run a release once and say which swap modes it supports'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "config" -d 'Check the agent config and exit (for ExecStartPre=)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "completions" -d 'Print the shell completion script (e.g. `cutover-agent completions bash > /etc/bash_completion.d/cutover-agent`)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "man" -d 'Write the manual pages (cutover-agent.1 and one per command) into DIR'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and not __fish_seen_subcommand_from run enroll doctor config completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cutover-agent -n "__fish_cutover_agent_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Load and validate the config; print it with defaults filled in (TOML, or JSON with -o json)'
