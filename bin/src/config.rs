//! Layered configuration: command line > `FLASHNODE_*` environment > TOML config file
//! (`--config`) > `--chain` preset > built-in defaults.
//!
//! The config file's keys are the subcommand's long flag names (`rpc-addr = "0.0.0.0:8545"`),
//! so `flashnode <cmd> --help` documents both. Layers below the command line are turned into
//! flags and parsed by clap itself, so a value from a file is validated exactly like one typed
//! on the command line, and an error names the file and the key.

use crate::{
    cli::Cli,
    presets::{ChainName, ChainPreset},
};
use clap::{
    parser::ValueSource, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, ValueEnum,
};
use std::{ffi::OsString, path::Path};

/// A configuration error, one line naming the source and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not TOML.
    #[error("config {path}: not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key that is not a flag of the subcommand, or a value of the wrong kind.
    #[error("config {path}: `{key}`: {reason}")]
    Field {
        /// The file (or the preset).
        path: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Gives every flag without an explicit variable a `FLASHNODE_<FLAG>` one.
fn with_env_vars(cmd: Command) -> Command {
    fn add(cmd: Command) -> Command {
        let cmd = cmd.mut_args(|arg| {
            let meta = matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpLong | ArgAction::Version
            );
            // Named after the flag as users type it (`--p2p-ban-duration` →
            // `FLASHNODE_P2P_BAN_DURATION`), not the field behind it.
            if let Some(long) = arg.get_long().filter(|_| !meta && arg.get_env().is_none()) {
                let var = format!("FLASHNODE_{}", long.to_uppercase().replace('-', "_"));
                // Built once per process; clap wants `'static` names without its `string` feature.
                arg.env(&*Box::leak(var.into_boxed_str()))
            } else {
                arg
            }
        });
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
        names.into_iter().fold(cmd, |cmd, name| cmd.mut_subcommand(name, add))
    }
    add(cmd)
}

/// The full command, with the environment variables.
pub fn command() -> Command {
    with_env_vars(Cli::command())
}

fn asks_for_help(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .any(|a| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version" | "help")))
}

fn explicit(m: &ArgMatches, id: &str) -> bool {
    matches!(m.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

/// Turns one `key = value` into flags for `sub`, or says why it cannot.
fn to_flags(
    sub: &Command,
    key: &str,
    value: &toml::Value,
    m: &ArgMatches,
) -> Result<Option<Vec<OsString>>, String> {
    let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(key)) else {
        return Err(format!(
            "unknown key (not a flag of `flashnode {}`; see its --help)",
            sub.get_name()
        ));
    };
    if explicit(m, arg.get_id().as_str()) {
        return Ok(None);
    }
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!("expected a string or a number, found {}", other.type_str())),
        }
    };
    if !arg.get_action().takes_values() {
        return match value {
            toml::Value::Boolean(true) => Ok(Some(vec![format!("--{key}").into()])),
            toml::Value::Boolean(false) => Ok(Some(Vec::new())),
            other => Err(format!("expected true or false, found {}", other.type_str())),
        };
    }
    let values = match value {
        toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
        other => vec![scalar(other)?],
    };
    Ok(Some(values.into_iter().map(|v| format!("--{key}={v}").into()).collect()))
}

/// The first line of a clap error, without its `error: ` prefix.
fn one_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_string()
}

/// Parses the command line with the lower layers filled in.
#[cfg(test)]
pub fn parse_from(args: Vec<OsString>) -> Result<Cli, ParseFailure> {
    parse_matches(args).map(|(cli, _, _)| cli)
}

/// Where each flag filled from a lower layer came from (flag name → file path or preset).
type Origins = Vec<(String, String)>;

fn finish(m: ArgMatches, origins: Origins) -> Result<(Cli, ArgMatches, Origins), ParseFailure> {
    let cli = Cli::from_arg_matches(&m).map_err(ParseFailure::Clap)?;
    Ok((cli, m, origins))
}

/// `parse_from`, also returning clap's matches (for `--print-config`).
fn parse_matches(args: Vec<OsString>) -> Result<(Cli, ArgMatches, Origins), ParseFailure> {
    let cmd = command();
    if asks_for_help(&args) {
        let m = cmd.try_get_matches_from(&args).map_err(ParseFailure::Clap)?;
        return finish(m, Vec::new());
    }
    // A lenient first pass: only to learn the subcommand, `--config`, `--chain` and which
    // flags the user set; required flags may still come from the file.
    let lenient = cmd.clone().ignore_errors(true);
    let lenient = {
        let names: Vec<String> =
            lenient.get_subcommands().map(|s| s.get_name().to_string()).collect();
        names.into_iter().fold(lenient, |c, n| c.mut_subcommand(n, |s| s.ignore_errors(true)))
    };
    let first = lenient.try_get_matches_from(&args).map_err(ParseFailure::Clap)?;
    let Some((sub_name, sub_m)) = first.subcommand() else {
        let m = cmd.try_get_matches_from(&args).map_err(ParseFailure::Clap)?;
        return finish(m, Vec::new());
    };
    let sub = cmd.find_subcommand(sub_name).cloned().ok_or_else(|| {
        ParseFailure::Config(ConfigError::Field {
            path: "-".into(),
            key: sub_name.into(),
            reason: "unknown".into(),
        })
    })?;

    let config_path = sub_m
        .get_one::<std::path::PathBuf>("config")
        .or_else(|| first.get_one::<std::path::PathBuf>("config"))
        .cloned();
    let file = match &config_path {
        Some(path) => load(path)?,
        None => toml::Table::new(),
    };
    let path_str = config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();

    // The preset: from the command line or env, else from the file.
    let has_chain = sub.get_arguments().any(|a| a.get_id() == "chain");
    let chain = if has_chain && explicit(sub_m, "chain") {
        sub_m.get_one::<ChainName>("chain").copied()
    } else {
        match file.get("chain") {
            Some(toml::Value::String(s)) => Some(ChainName::from_str(s, true).map_err(|_| {
                ParseFailure::Config(ConfigError::Field {
                    path: path_str.clone(),
                    key: "chain".into(),
                    reason: format!(
                        "unknown chain `{s}` (base, base-sepolia, optimism, op-sepolia, devnet)"
                    ),
                })
            })?),
            Some(other) => {
                return Err(ParseFailure::Config(ConfigError::Field {
                    path: path_str,
                    key: "chain".into(),
                    reason: format!("expected a string, found {}", other.type_str()),
                }))
            }
            None => None,
        }
    };

    let mut injected: Vec<(String, String, Vec<OsString>)> = Vec::new();
    for (key, value) in &file {
        match to_flags(&sub, key, value, sub_m) {
            Ok(Some(flags)) => injected.push((path_str.clone(), key.clone(), flags)),
            Ok(None) => {}
            Err(reason) => {
                return Err(ParseFailure::Config(ConfigError::Field {
                    path: path_str,
                    key: key.clone(),
                    reason,
                }))
            }
        }
    }
    if let Some(name) = chain {
        let devnet_id = sub_m.try_get_one::<u64>("chain_id").ok().flatten().copied().unwrap_or(901);
        for (key, value) in ChainPreset::of(name, devnet_id).flag_defaults() {
            if file.contains_key(key) || !sub.get_arguments().any(|a| a.get_long() == Some(key)) {
                continue;
            }
            if let Ok(Some(flags)) = to_flags(&sub, key, &value, sub_m) {
                injected.push((
                    format!(
                        "preset {}",
                        name.to_possible_value()
                            .map(|v| v.get_name().to_string())
                            .unwrap_or_default()
                    ),
                    key.to_string(),
                    flags,
                ));
            }
        }
    }

    let mut full = args.clone();
    full.extend(injected.iter().flat_map(|(_, _, f)| f.iter().cloned()));
    match cmd.clone().try_get_matches_from(&full) {
        Ok(m) => finish(
            m,
            injected.iter().map(|(origin, key, _)| (key.clone(), origin.clone())).collect(),
        ),
        Err(err) => {
            // Blame a layer's key when it alone breaks a command line that was fine without it
            // (missing required flags aside: the layers are there to supply those).
            match cmd.clone().try_get_matches_from(&args) {
                Err(own) if own.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                    return Err(ParseFailure::Clap(own))
                }
                _ => {}
            }
            for (origin, key, flags) in &injected {
                let mut one = args.clone();
                one.extend(flags.iter().cloned());
                if let Err(e) = cmd.clone().try_get_matches_from(&one) {
                    if e.kind() != clap::error::ErrorKind::MissingRequiredArgument {
                        return Err(ParseFailure::Config(ConfigError::Field {
                            path: origin.clone(),
                            key: key.clone(),
                            reason: one_line(&e),
                        }));
                    }
                }
            }
            Err(ParseFailure::Clap(err))
        }
    }
}

fn load(path: &Path) -> Result<toml::Table, ParseFailure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ParseFailure::Config(ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let reason = e.to_string().lines().next().unwrap_or_default().to_string();
        ParseFailure::Config(ConfigError::Syntax { path: path.display().to_string(), reason })
    })
}

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum ParseFailure {
    /// clap's own error (prints usage; `--help` and `--version` land here too).
    Clap(clap::Error),
    /// A configuration error.
    Config(ConfigError),
}

/// The effective settings of the subcommand in config-file form, each with where it came from.
pub fn effective(m: &ArgMatches, origins: &[(String, String)]) -> String {
    let Some((name, sub_m)) = m.subcommand() else { return String::new() };
    let cmd = command();
    let Some(sub) = cmd.find_subcommand(name) else { return String::new() };
    let mut out = format!("# effective settings of `flashnode {name}`\n");
    for arg in sub.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else { continue };
        if matches!(long, "config" | "print-config" | "help" | "version") {
            continue;
        }
        let layer = origins.iter().find(|(key, _)| key == long).map(|(_, origin)| origin.as_str());
        let source = match sub_m.value_source(id) {
            Some(ValueSource::CommandLine) => layer.unwrap_or("command line"),
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let Some(raw) = sub_m.get_raw(id) else {
            out.push_str(&format!("# {long} is unset\n"));
            continue;
        };
        // Secrets: say how many and where from, never the values (this output ends up in logs
        // and support tickets).
        if long == "ws-api-keys" {
            out.push_str(&format!("# {long}: {} keys, not printed  # {source}\n", raw.count()));
            continue;
        }
        let values: Vec<String> = raw
            .map(|v| {
                let v = v.to_string_lossy();
                if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
                    v.into_owned()
                } else {
                    format!("{v:?}")
                }
            })
            .collect();
        let value = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) || values.len() > 1 {
            format!("[{}]", values.join(", "))
        } else {
            values.join("")
        };
        out.push_str(&format!("{long} = {value}  # {source}\n"));
    }
    out
}

/// The flags of the subcommand the operator set (command line, environment or config file),
/// once [`parse`] ran: defaults that derive from the chain's cadence leave these alone.
static EXPLICIT: std::sync::OnceLock<std::collections::HashSet<String>> =
    std::sync::OnceLock::new();

/// Whether the operator set the flag whose clap id (its field name) is `id`.
pub fn explicitly_set(id: &str) -> bool {
    EXPLICIT.get().is_some_and(|set| set.contains(id))
}

/// The ids of the subcommand's flags set on the command line (config-file values are passed
/// as flags) or in the environment.
fn explicit_ids(m: &ArgMatches) -> std::collections::HashSet<String> {
    let Some((_, sub_m)) = m.subcommand() else { return Default::default() };
    sub_m
        .ids()
        .filter(|id| explicit(sub_m, id.as_str()))
        .map(|id| id.as_str().to_string())
        .collect()
}

/// Where `flashnode node`'s `--chain` came from, once [`parse`] ran (None: not set, the
/// preset is then looked up by the upstream's chain id).
static CHAIN_ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where `--chain` came from: `--chain flag`, `environment FLASHNODE_CHAIN` or
/// `config file <path>` (None when it was not set).
pub fn chain_origin() -> Option<&'static str> {
    CHAIN_ORIGIN.get().map(String::as_str)
}

/// Where the `chain` of `flashnode node` came from, if it was set.
fn origin_of_chain(m: &ArgMatches, origins: &[(String, String)]) -> Option<String> {
    let ("node", sub_m) = m.subcommand()? else { return None };
    let layer = origins.iter().find(|(key, _)| key == "chain").map(|(_, origin)| origin);
    match sub_m.value_source("chain")? {
        ValueSource::CommandLine => Some(match layer {
            Some(file) => format!("config file {file}"),
            None => "--chain flag".into(),
        }),
        ValueSource::EnvVariable => Some("environment FLASHNODE_CHAIN".into()),
        _ => None,
    }
}

/// What `--print-config` says about the chain of a `node` without `--chain`: the preset of
/// the upstream's chain id, asked of the upstream as the node does at start.
fn chain_from_upstream(url: &str, timeout: std::time::Duration) -> String {
    let asked = tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| {
        rt.block_on(async {
            let upstream = flashnode_rpc::Upstream::connect(url, timeout).await?;
            upstream.call("eth_chainId", Some(serde_json::json!([]))).await
        })
    });
    let id = match asked {
        Ok(Ok(v)) => v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()),
        Ok(Err(e)) => {
            return format!(
                "# chain is unset: the preset is taken at start from the upstream's chain id ({url} did not answer now: {e})\n"
            )
        }
        Err(e) => return format!("# chain is unset: the preset is taken at start from the upstream's chain id ({e})\n"),
    };
    match id.map(|id| (id, ChainPreset::by_chain_id(id))) {
        Some((id, Some(preset))) => {
            let mut out = format!(
                "chain = \"{}\"  # the upstream's chain id {id} ({url})\n",
                preset.label()
            );
            for (key, value) in preset.flag_defaults() {
                if matches!(key, "native-blocks-timestamp") {
                    out.push_str(&format!("# {key} = {value} comes with it (preset {})\n", preset.label()));
                }
            }
            out
        }
        Some((id, None)) => format!(
            "# chain: no preset has the upstream's chain id {id} ({url}): a devnet-like chain at Isthmus\n"
        ),
        None => format!("# chain is unset: {url} answered eth_chainId with no chain id\n"),
    }
}

/// Parses `std::env::args_os()`, exiting like clap on errors (config errors: one line, exit 2).
/// With `--print-config`, prints the effective settings and exits.
pub fn parse() -> Cli {
    match parse_matches(std::env::args_os().collect()) {
        Ok((cli, m, origins)) => {
            if let Some(origin) = origin_of_chain(&m, &origins) {
                let _ = CHAIN_ORIGIN.set(origin);
            }
            let _ = EXPLICIT.set(explicit_ids(&m));
            if cli.print_config {
                let mut text = effective(&m, &origins);
                if let crate::cli::Command::Node(node) = &cli.command {
                    if node.chain.is_none() {
                        let line =
                            chain_from_upstream(&node.upstream_rpc, node.overlay.upstream_timeout);
                        text = text.replace("# chain is unset\n", &line);
                    }
                }
                print!("{text}");
                std::process::exit(0);
            }
            cli
        }
        Err(ParseFailure::Clap(e)) => e.exit(),
        Err(ParseFailure::Config(e)) => {
            eprintln!("flashnode: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command as Sub;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    /// A file removed on drop (no extra dependency for one test helper).
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> Self {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let id = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let path = std::env::temp_dir()
                    .join(format!("flashnode-config-{}-{nanos}-{id}.toml", std::process::id()));
                std::fs::write(&path, text).expect("temp file");
                Self(path)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn node_args(cli: Cli) -> crate::cli::NodeArgs {
        match cli.command {
            Sub::Node(n) => n,
            other => panic!("expected node, got {other:?}"),
        }
    }

    #[test]
    fn every_flag_reads_flashnode_and_its_long_name_from_the_environment() {
        fn check(cmd: &Command, path: &str, seen: &mut usize) {
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(
                    arg.get_action(),
                    ArgAction::Help | ArgAction::HelpLong | ArgAction::Version
                ) {
                    continue;
                }
                let want = format!("FLASHNODE_{}", long.to_uppercase().replace('-', "_"));
                assert_eq!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some(want.as_str()),
                    "{path} --{long}"
                );
                *seen += 1;
            }
            for sub in cmd.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let mut seen = 0;
        check(&command(), "flashnode", &mut seen);
        assert!(seen > 50, "only {seen} flags checked");
    }

    #[test]
    fn file_fills_flags_and_command_line_wins() {
        let f = write("upstream-rpc = \"http://10.0.0.1:8545\"\nflashblocks-url = \"ws://10.0.0.2/ws\"\nws-per-ip-limit = 3\nws-compression = true\nws-api-keys = [\"a\", \"b\"]\n");
        let p = f.0.to_str().unwrap();
        let n = node_args(
            parse_from(args(&["flashnode", "node", "--config", p, "--ws-per-ip-limit", "7"]))
                .unwrap(),
        );
        assert_eq!(n.upstream_rpc, "http://10.0.0.1:8545");
        assert_eq!(n.flashblocks_url.as_deref(), Some("ws://10.0.0.2/ws"));
        assert_eq!(n.overlay.fanout.ws_per_ip_limit, 7);
        assert!(n.overlay.fanout.ws_compression);
        assert_eq!(n.overlay.fanout.ws_api_keys, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn rpc_limits_come_from_file_environment_and_command_line() {
        let f = write("upstream-rpc = \"http://x:1\"\nrpc-per-ip-connections = 4\nrpc-per-ip-subscriptions = 9\nrpc-evm-timeout = \"2s\"\nrpc-max-concurrent-executions = 3\n");
        let p = f.0.to_str().unwrap();
        let n = node_args(parse_from(args(&["flashnode", "node", "--config", p])).unwrap());
        assert_eq!(n.overlay.rpc_per_ip_connections, 4);
        assert_eq!(n.overlay.rpc_per_ip_subscriptions, 9);
        assert_eq!(n.overlay.rpc_evm_timeout, std::time::Duration::from_secs(2));
        assert_eq!(n.overlay.rpc_max_concurrent_executions, 3);
        let n = node_args(
            parse_from(args(&[
                "flashnode",
                "node",
                "--config",
                p,
                "--rpc-per-ip-connections",
                "0",
            ]))
            .unwrap(),
        );
        assert_eq!(n.overlay.rpc_per_ip_connections, 0, "the command line wins");
        let n = node_args(
            parse_from(args(&["flashnode", "node", "--upstream-rpc", "http://x:1"])).unwrap(),
        );
        assert_eq!(
            (n.overlay.rpc_per_ip_connections, n.overlay.rpc_per_ip_subscriptions),
            (100, 1_000)
        );
        assert_eq!(n.overlay.rpc_evm_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn preset_supplies_the_stream_and_file_overrides_preset() {
        let f = write("chain = \"base\"\nupstream-rpc = \"http://op-reth:8545\"\n");
        let p = f.0.to_str().unwrap();
        let n = node_args(parse_from(args(&["flashnode", "node", "--config", p])).unwrap());
        assert_eq!(n.chain, Some(ChainName::Base));
        assert_eq!(n.flashblocks_url.as_deref(), Some("wss://mainnet.flashblocks.base.org/ws"));
        let f = write("chain = \"base-sepolia\"\nupstream-rpc = \"http://x:1\"\nflashblocks-url = \"ws://mine/ws\"\n");
        let n = node_args(
            parse_from(args(&["flashnode", "node", "--config", f.0.to_str().unwrap()])).unwrap(),
        );
        assert_eq!(n.flashblocks_url.as_deref(), Some("ws://mine/ws"));
        let n = node_args(
            parse_from(args(&[
                "flashnode",
                "node",
                "--chain",
                "base-sepolia",
                "--upstream-rpc",
                "http://x:1",
            ]))
            .unwrap(),
        );
        assert_eq!(n.flashblocks_url.as_deref(), Some("wss://sepolia.flashblocks.base.org/ws"));
    }

    #[test]
    fn bad_values_name_the_field() {
        let f = write("upstream-rpc = \"http://x:1\"\nws-per-ip-limit = \"many\"\n");
        let err = match parse_from(args(&["flashnode", "node", "--config", f.0.to_str().unwrap()]))
        {
            Err(ParseFailure::Config(e)) => e.to_string(),
            other => panic!("expected a config error, got {other:?}"),
        };
        assert!(err.contains("`ws-per-ip-limit`") && err.contains("many"), "{err}");
        assert!(!err.contains('\n'));
        let f = write("upstream-rpc = \"http://x:1\"\nrpc-adr = \"1\"\n");
        let err = match parse_from(args(&["flashnode", "node", "--config", f.0.to_str().unwrap()]))
        {
            Err(ParseFailure::Config(e)) => e.to_string(),
            other => panic!("expected a config error, got {other:?}"),
        };
        assert!(err.contains("`rpc-adr`: unknown key"), "{err}");
        let f = write("upstream-rpc = \"http://x:1\"\nchain = \"mars\"\n");
        assert!(matches!(
            parse_from(args(&["flashnode", "node", "--config", f.0.to_str().unwrap()])),
            Err(ParseFailure::Config(_))
        ));
        let f = write("this is = not toml = at all");
        assert!(matches!(
            parse_from(args(&["flashnode", "node", "--config", f.0.to_str().unwrap()])),
            Err(ParseFailure::Config(ConfigError::Syntax { .. }))
        ));
    }
}
