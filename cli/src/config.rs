//! `ticklane run --config FILE`: a TOML file whose keys are `run`'s long
//! options (`queue = 1`, `feed = ["239.1.1.1:26477"]`, `spin = true`,
//! `grpc = "127.0.0.1:50051"`; `-` or `_` alike), so that every flag has a
//! key. The command line wins: an option given there ignores the file's
//! key. A key that is no option, or a value that is no option value, is an
//! error naming the key and its line.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};

/// `args` with the options of `run --config FILE` inserted after `run`.
pub(crate) fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(run) = args.iter().position(|a| a == "run") else {
        return Ok(args);
    };
    let given: Vec<String> = args[run + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let file = given.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_owned).or_else(|| {
            (a == "--config")
                .then(|| given.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(file) = file else {
        return Ok(args);
    };
    let options = options_of(Path::new(&file), &given)?;
    let mut out = args[..=run].to_vec();
    out.extend(options.into_iter().map(OsString::from));
    out.extend_from_slice(&args[run + 1..]);
    Ok(out)
}

/// The line of `key` in `text` (1-based), for messages.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('"');
            l.starts_with(key)
                && l[key.len()..]
                    .trim_start()
                    .trim_start_matches('"')
                    .trim_start()
                    .starts_with('=')
        })
        .map_or(0, |i| i + 1)
}

fn options_of(path: &Path, given: &[String]) -> anyhow::Result<Vec<String>> {
    use clap::CommandFactory;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let cli = super::Cli::command();
    let run = cli
        .find_subcommand("run")
        .context("the run command is defined")?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let at = || {
            format!(
                "{} line {}, key '{key}'",
                path.display(),
                line_of(&text, key)
            )
        };
        let Some(arg) = run
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && name != "config")
        else {
            bail!(
                "{}: not an option of ticklane run (`ticklane run --help` lists them)",
                at()
            );
        };
        let flag = format!("--{name}");
        if given
            .iter()
            .any(|g| *g == flag || g.starts_with(&format!("{flag}=")))
        {
            continue; // the command line wins
        }
        let takes_value = arg.get_action().takes_values();
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for v in values {
            match (v, takes_value) {
                (toml::Value::Boolean(true), false) => out.push(flag.clone()),
                (toml::Value::Boolean(false), false) => {}
                (toml::Value::String(s), true) => out.extend([flag.clone(), s.clone()]),
                (toml::Value::Integer(i), true) => out.extend([flag.clone(), i.to_string()]),
                (toml::Value::Float(f), true) => out.extend([flag.clone(), f.to_string()]),
                (_, false) => bail!("{}: {flag} is a switch: give true or false", at()),
                (other, true) => bail!(
                    "{}: {flag} takes a string or a number, not {}",
                    at(),
                    other.type_str()
                ),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn with_config(text: &str, cmdline: &[&str]) -> anyhow::Result<Vec<OsString>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        let mut a = args(&["ticklane", "run", "--config", path.to_str().unwrap()]);
        a.extend(args(cmdline));
        expand(a)
    }

    #[test]
    fn every_key_is_a_flag_and_the_command_line_wins() {
        let text = "iface = \"eth1\"\nqueue = 2\nfeed = [\"239.1.1.1:1\", \"239.1.1.2:2\"]\n\
                    spin = true\ntrust_nic_checksum = false\ngrpc = \"127.0.0.1:50051\"\n\
                    duration = 1.5\n";
        let out = with_config(text, &["--queue", "3"]).unwrap();
        let cli = crate::Cli::try_parse_from(&out).unwrap();
        let crate::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let shown = format!("{run:?}");
        for part in [
            "iface: \"eth1\"",
            "queue: 3",
            "spin: true",
            "trust_nic_checksum: false",
            "duration: Some(1.5)",
            "127.0.0.1:50051",
            "port: 2",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
    }

    #[test]
    fn a_wrong_key_or_value_names_the_key_and_its_line() {
        let e = with_config("iface = \"x\"\n\nqeue = 2\n", &[]).unwrap_err();
        assert!(
            e.to_string().contains("line 3, key 'qeue': not an option"),
            "{e}"
        );
        let e = with_config("spin = 3\n", &[]).unwrap_err();
        assert!(e.to_string().contains("line 1, key 'spin'"), "{e}");
        let e = with_config("queue = [1, [2]]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("not array"), "{e}");
        let e = with_config("queue = \n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("not valid TOML"), "{e:#}");
        assert_eq!(expand(args(&["ticklane", "book", "f"])).unwrap().len(), 3);
    }
}
