//! What a command that fails exits with: bad input (2) or a failing service (1).

use std::fmt;

/// A failed command: what to tell the operator, and the exit code.
#[derive(Debug)]
pub struct Fail {
    /// Exit code 2 (bad input) rather than 1 (a service failed).
    pub bad_input: bool,
    /// What went wrong, and what to do about it.
    pub message: String,
}

impl Fail {
    /// Bad input: a name, a row, a file or a setting the operator gave.
    pub fn input(message: impl Into<String>) -> Self {
        Fail {
            bad_input: true,
            message: message.into(),
        }
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        if self.bad_input { 2 } else { 1 }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<kafka_orm::Error> for Fail {
    /// A kafka-orm error: a service failed, but for the ones that name bad input.
    fn from(e: kafka_orm::Error) -> Self {
        let bad_input = matches!(
            e,
            kafka_orm::Error::Admin { .. }
                | kafka_orm::Error::NoDlq { .. }
                | kafka_orm::Error::Config(_)
        );
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        Fail { bad_input, message }
    }
}

/// The result of a command.
pub type Outcome<T = ()> = Result<T, Fail>;
