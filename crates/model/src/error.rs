use thiserror::Error;

/// Why a single value failed to parse. The message says what is wrong and, where there is one,
/// the value to use instead; the caller adds the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A value that breaks a rule of the model, named by the field (as the CLI flag), the value and
/// the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} '{value}': {reason}")]
pub struct ModelError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl ModelError {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Attaches a field name to a parse failure.
    pub fn from_parse(field: &str, value: &str, err: ParseError) -> Self {
        Self::new(field, value, err.0)
    }
}
