//! Turns config text and `BIGPIPE_*` environment variables into one merged, source-tagged tree.
//!
//! Both file formats go through the same steps: parse into a figment `Dict`, then *unflatten*
//! dotted keys, so the Go version's flat `{"log.level": 5}` and the nested `[log] level = 5` mean
//! the same thing. The environment becomes a second layer merged on top by figment, which also
//! tags every value with its layer so that problems can say "set by BIGPIPE_HTTP_SERVER_PORT".

use std::collections::HashMap;

use figment::providers::{Format as _, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Format;
use super::error::Problem;
use super::validate::KEYS;

/// Prefix of environment variables that override config keys.
pub(crate) const ENV_PREFIX: &str = "BIGPIPE_";

/// Metadata name of the environment layer; how [`Sources::is_from_env`] recognises its values.
const ENV_LAYER: &str = "environment variables";

/// The merged configuration tree plus what is needed to tell where each value came from.
#[derive(Debug)]
pub(crate) struct Sources {
    /// Keeps the layer metadata that value tags point to.
    figment: Figment,
    /// File layer with the environment merged over it; keys are single path segments.
    pub(crate) root: Dict,
    /// Problems found while assembling the tree (conflicting spellings of one key). They do not
    /// stop validation, so they are reported together with everything else.
    pub(crate) problems: Vec<Problem>,
    /// The whole environment, for `${NAME}` secret references (see `secret`).
    pub(crate) vars: HashMap<String, String>,
    /// `BIGPIPE_*` variables that name no setting (a script's `BIGPIPE_BIN`, say): not read,
    /// named once in a warning.
    pub(crate) ignored_env: Vec<String>,
}

impl Sources {
    /// Parses `text` as `format`, overlays the `BIGPIPE_*` variables among `env`, and merges.
    ///
    /// `label` names the document in problems that concern all of it (a syntax error).
    /// Returns `Err` only when the document is unusable as a whole.
    pub(crate) fn assemble(
        text: &str,
        format: Format,
        label: &str,
        env: Vec<(String, String)>,
        vars: HashMap<String, String>,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let file = parse(text, format, label)?;
        let file = unflatten(file, "", &mut problems);
        let (env, ignored_env) = env_layer(env, &mut problems);

        let figment = Figment::new()
            .merge(Layer {
                name: format!("{} {label}", format.name()),
                dict: file,
            })
            .merge(Layer {
                name: ENV_LAYER.to_owned(),
                dict: env,
            });
        // `extract::<Value>` keeps the tags (figment's documented way to read the merged tree).
        let root = match figment.extract::<Value>() {
            Ok(Value::Dict(_, root)) => root,
            Ok(_) => Dict::new(),
            Err(e) => return Err(vec![Problem::new(label, one_line(&e.to_string()))]),
        };
        Ok(Self {
            figment,
            root,
            problems,
            vars,
            ignored_env,
        })
    }

    /// True if `value` came from an environment variable rather than the file.
    pub(crate) fn is_from_env(&self, value: &Value) -> bool {
        self.figment
            .get_metadata(value.tag())
            .is_some_and(|md| md.name == ENV_LAYER)
    }
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
        }
    }
}

/// The name of the environment variable that sets `key` (`http.server.port` →
/// `BIGPIPE_HTTP_SERVER_PORT`). Array indices and entry keys are cut off: the variable sets the
/// whole array.
pub(crate) fn env_var_name(key: &str) -> String {
    let top = key.split('[').next().unwrap_or(key);
    format!("{ENV_PREFIX}{}", top.replace('.', "_").to_ascii_uppercase())
}

/// A figment provider over an already-built tree, named so tags can be traced back to it.
struct Layer {
    name: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn parse(text: &str, format: Format, label: &str) -> Result<Dict, Vec<Problem>> {
    let whole = |message: String| vec![Problem::new(label, message)];
    match format {
        Format::Toml => {
            // Toml::string rather than Toml::file_exact: `load` reads the file itself so that a
            // missing file is reported with its path, and `load_from_str` shares this path.
            let mut profiles = Toml::string(text)
                .data()
                .map_err(|e| whole(format!("invalid TOML: {}", one_line(&e.to_string()))))?;
            Ok(profiles.remove(&Profile::Default).unwrap_or_default())
        }
        Format::Json => {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| whole(format!("invalid JSON: {e}")))?;
            if !json.is_object() {
                return Err(whole(format!(
                    "expected a JSON object at the top level, got {}",
                    json_kind(&json)
                )));
            }
            match Value::serialize(json) {
                Ok(Value::Dict(_, dict)) => Ok(dict),
                Ok(_) => Err(whole("expected a JSON object at the top level".to_owned())),
                Err(e) => Err(whole(format!("invalid JSON: {e}"))),
            }
        }
    }
}

fn json_kind(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Collapses a multi-line parser message (the toml crate draws a source snippet) into one line,
/// keeping the text and dropping the snippet gutter, so `ConfigError` stays one line per problem.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| {
            let gutter = line.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
            !line.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Splits dotted keys into nested tables, recursively, except inside arrays (array entries are
/// records with plain camelCase keys). A key with an empty segment (`a..b`) is kept as written
/// and will surface as an unknown key.
pub(crate) fn unflatten(dict: Dict, prefix: &str, problems: &mut Vec<Problem>) -> Dict {
    let mut out = Dict::new();
    for (key, value) in dict {
        let path = join(prefix, &key);
        let value = match value {
            Value::Dict(tag, inner) => Value::Dict(tag, unflatten(inner, &path, problems)),
            other => other,
        };
        let segments: Vec<&str> = if key.split('.').any(str::is_empty) {
            vec![key.as_str()]
        } else {
            key.split('.').collect()
        };
        insert(&mut out, prefix, &segments, value, problems);
    }
    out
}

/// Inserts `value` at `segments` below `dict`, merging tables. When two spellings give the same
/// key different values (`"log.level"` and `"log": {"level"}`), the first is kept and a problem
/// is recorded: silently picking one (as Go's "last wins") hides mistakes.
fn insert(dict: &mut Dict, prefix: &str, segments: &[&str], value: Value, problems: &mut Vec<Problem>) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let path = join(prefix, first);
    if rest.is_empty() {
        match (dict.get_mut(*first), value) {
            (None, value) => {
                dict.insert((*first).to_owned(), value);
            }
            (Some(Value::Dict(_, existing)), Value::Dict(_, new)) => {
                for (key, value) in new {
                    insert(existing, &path, &[key.as_str()], value, problems);
                }
            }
            (Some(_), _) => problems.push(conflict(&path)),
        }
        return;
    }
    let child = dict
        .entry((*first).to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    match child {
        Value::Dict(_, child) => insert(child, &path, rest, value, problems),
        _ => problems.push(conflict(&path)),
    }
}

fn conflict(path: &str) -> Problem {
    let hint = if path == "kafka.producer.ack" {
        "; write kafka.producer.ack.mode next to kafka.producer.ack.timeout.ms"
    } else {
        ""
    };
    Problem::new(
        path,
        format!("set more than once, or both as a value and as a table of sub-keys{hint}"),
    )
}

/// Builds the environment layer: each `BIGPIPE_*` variable whose name is [`env_var_name`] of a
/// known key (case-insensitively) sets that key, its value parsed with figment's env value
/// syntax (`8080` is a number, `[a, b]` an array, anything else a string). Matching the known
/// keys, rather than turning every `_` into a `.`, reads `metrics.max_hosts` right and leaves
/// other programs' `BIGPIPE_*` variables alone: their names come back, to be warned about once.
///
/// It takes the variables as a list instead of reading the process environment so that tests can
/// exercise it without `std::env::set_var` (a data race in a multi-threaded test binary), and so
/// that the code path tested is the one `load` runs.
fn env_layer(mut vars: Vec<(String, String)>, problems: &mut Vec<Problem>) -> (Dict, Vec<String>) {
    // The process environment has no order; sort so conflicts are reported deterministically.
    vars.sort();
    let known: HashMap<String, &str> = KEYS.iter().map(|key| (env_var_name(key), *key)).collect();
    let mut out = Dict::new();
    let mut ignored = Vec::new();
    for (name, raw) in vars {
        let name = name.trim();
        if strip_prefix_ignore_case(name, ENV_PREFIX).is_none() {
            continue;
        }
        let Some(key) = known.get(&name.to_ascii_uppercase()) else {
            ignored.push(name.to_owned());
            continue;
        };
        let Ok(value) = raw.parse::<Value>();
        let segments: Vec<&str> = key.split('.').collect();
        insert(&mut out, "", &segments, value, problems);
    }
    (out, ignored)
}

fn strip_prefix_ignore_case<'s>(name: &'s str, prefix: &str) -> Option<&'s str> {
    let head = name.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        name.get(prefix.len()..)
    } else {
        None
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flat_and_nested_json_keys_unflatten_to_the_same_tree() {
        let flat = Sources::assemble(r#"{"log.level": 5}"#, Format::Json, "t", vec![], HashMap::new());
        let nested = Sources::assemble(
            r#"{"log": {"level": 5}}"#,
            Format::Json,
            "t",
            vec![],
            HashMap::new(),
        );
        let (flat, nested) = (flat.map(|s| s.root), nested.map(|s| s.root));
        assert_eq!(flat, nested);
        let root = flat.unwrap_or_default();
        let level = root
            .get("log")
            .and_then(|v| v.as_dict())
            .and_then(|d| d.get("level"));
        assert_eq!(level.and_then(Value::to_u128), Some(5));
    }

    #[test]
    fn conflicting_spellings_of_one_key_are_a_problem() {
        let sources = Sources::assemble(
            r#"{"log.level": 5, "log": {"level": 4}}"#,
            Format::Json,
            "t",
            vec![],
            HashMap::new(),
        );
        let problems = sources.map(|s| s.problems).unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "log.level");
    }

    #[test]
    fn env_variables_map_to_dotted_keys_and_typed_values() {
        let vars = env(&[
            ("BIGPIPE_HTTP_SERVER_PORT", "8080"),
            ("bigpipe_kafka_bootstrap_servers", "a:9092,b:9092"),
            ("OTHER_HTTP_SERVER_PORT", "1"),
            ("BIGPIPE_", "ignored"),
            ("BIGPIPE_BIN", "/usr/bin/bigpipe"),
            ("BIGPIPE_KAFKA_VERSION", "4.3.1"),
        ]);
        let mut problems = Vec::new();
        let (dict, ignored) = env_layer(vars, &mut problems);
        assert!(problems.is_empty());
        assert_eq!(ignored, ["BIGPIPE_", "BIGPIPE_BIN", "BIGPIPE_KAFKA_VERSION"]);
        let root = Value::from(dict);
        let port = root.find_ref("http.server.port").and_then(Value::to_u128);
        assert_eq!(port, Some(8080));
        let servers = root.find_ref("kafka.bootstrap.servers").and_then(Value::as_str);
        assert_eq!(servers, Some("a:9092,b:9092"));
        assert_eq!(root.as_dict().map(|d| d.len()), Some(2));
    }

    #[test]
    fn env_variables_match_keys_with_underscores() {
        let (dict, ignored) = env_layer(env(&[("BIGPIPE_METRICS_MAX_HOSTS", "5")]), &mut Vec::new());
        let hosts = Value::from(dict)
            .find_ref("metrics.max_hosts")
            .and_then(Value::to_u128);
        assert_eq!((hosts, ignored.len()), (Some(5), 0));
    }

    #[test]
    fn env_values_are_tagged_as_coming_from_the_environment() {
        let sources = Sources::assemble(
            "[log]\nlevel = 5\ndirectory = \"x\"",
            Format::Toml,
            "t",
            env(&[("BIGPIPE_LOG_LEVEL", "debug")]),
            HashMap::new(),
        );
        let Ok(sources) = sources else {
            panic!("assemble failed");
        };
        let log = sources.root.get("log").and_then(|v| v.as_dict());
        let level = log.and_then(|d| d.get("level"));
        let directory = log.and_then(|d| d.get("directory"));
        assert!(level.is_some_and(|v| sources.is_from_env(v)));
        assert!(directory.is_some_and(|v| !sources.is_from_env(v)));
    }

    #[test]
    fn env_var_name_is_derived_from_the_key() {
        assert_eq!(env_var_name("http.server.port"), "BIGPIPE_HTTP_SERVER_PORT");
        assert_eq!(env_var_name("kafka.topics[0].name"), "BIGPIPE_KAFKA_TOPICS");
    }

    #[test]
    fn multi_line_parser_messages_become_one_line() {
        let text = "TOML parse error at line 1, column 5\n  |\n1 | a = \n  |     ^\ninvalid string";
        assert_eq!(
            one_line(text),
            "TOML parse error at line 1, column 5; invalid string"
        );
    }
}
