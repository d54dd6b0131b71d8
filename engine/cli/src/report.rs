//! An error as the operator reads it: the context, then each cause, each said once.
//!
//! Many of the engine's errors name their cause in their own message ("cannot listen on
//! 127.0.0.1:2575: Address already in use") and also keep it as their `source`, so anyhow's
//! `{:#}` said it twice. Here a cause the message so far already ends with (after a `: `) is
//! left out; a message that merely ends with the same words keeps its cause.

/// `context: cause: cause`, without a cause the text before it already ends with as `: cause`.
pub fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.is_empty() {
            text = said;
        } else if !text.ends_with(&format!(": {said}")) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As thiserror makes it from `#[error("… {source}")]` with a `source` field.
    #[derive(Debug)]
    struct Bind {
        source: std::io::Error,
    }

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:2575: {}", self.source)
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_the_message_already_says_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Bind { source: io }).context("cannot start the engine");
        assert_eq!(
            chain(&e),
            "cannot start the engine: cannot listen on 127.0.0.1:2575: Address already in use"
        );
    }

    #[test]
    fn a_message_ending_in_the_same_words_keeps_its_cause() {
        let e = anyhow::anyhow!("timed out").context("the receiver timed out");
        assert_eq!(chain(&e), "the receiver timed out: timed out");
    }

    #[test]
    fn a_cause_the_message_does_not_say_is_added() {
        let e = anyhow::anyhow!("disk full").context("cannot write the config");
        assert_eq!(chain(&e), "cannot write the config: disk full");
    }
}
