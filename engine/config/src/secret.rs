//! Values that may hold secrets: `${NAME}` takes an environment variable, `file:/path` the
//! contents of a file (trimmed). Validation checks the syntax and warns about unset variables
//! without ever reading a secret; the engine resolves them when it starts (an unset variable
//! is an error then).

use std::fmt;

/// A configured value, possibly with `${VAR}` parts or a `file:` reference. Its `Debug` and
/// `Display` never show what it resolves to.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue {
    template: String,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({:?})", self.template)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

impl SecretValue {
    /// Stands in for a value that failed validation (the config is refused anyway).
    pub(crate) fn invalid() -> SecretValue {
        SecretValue {
            template: String::new(),
        }
    }

    /// Checks the syntax; returns the names of the variables used.
    pub fn parse(template: &str) -> Result<(SecretValue, Vec<String>), String> {
        let mut vars = Vec::new();
        if let Some(path) = template.strip_prefix("file:") {
            if path.trim().is_empty() {
                return Err("file: needs a path, such as file:/run/secrets/chie-key".into());
            }
            return Ok((
                SecretValue {
                    template: template.into(),
                },
                vars,
            ));
        }
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("{template:?} has an unclosed ${{: expected ${{NAME}}"))?;
            let name = &after[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "${{{name}}} is not a variable name: expected letters, digits and _"
                ));
            }
            vars.push(name.to_string());
            rest = &after[end + 1..];
        }
        Ok((
            SecretValue {
                template: template.into(),
            },
            vars,
        ))
    }

    /// The value, with variables and files read now.
    pub fn resolve(&self) -> Result<String, String> {
        if let Some(path) = self.template.strip_prefix("file:") {
            return std::fs::read_to_string(path.trim())
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.trim()));
        }
        let mut out = String::new();
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').unwrap_or(after.len());
            let name = &after[..end];
            let value = std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let (v, vars) =
            SecretValue::parse("amqp://${WYV_TEST_USER}:x@host/${WYV_TEST_VHOST}").unwrap();
        assert_eq!(vars, ["WYV_TEST_USER", "WYV_TEST_VHOST"]);
        assert!(
            v.resolve()
                .unwrap_err()
                .contains("WYV_TEST_USER is not set")
        );
        assert!(SecretValue::parse("${oops").is_err());
        assert!(SecretValue::parse("${a-b}").is_err());
        assert_eq!(
            SecretValue::parse("plain").unwrap().0.resolve().unwrap(),
            "plain"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "s3cret\n").unwrap();
        let f = format!("file:{}", dir.path().join("k").display());
        assert_eq!(
            SecretValue::parse(&f).unwrap().0.resolve().unwrap(),
            "s3cret"
        );
    }
}
