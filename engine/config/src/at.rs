//! Where findings go while one file is validated: its path and the diagnostics so far.

use std::path::Path;

use serde_saphyr::Spanned;

use crate::Diagnostic;

pub(crate) struct At<'a> {
    pub file: &'a Path,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> At<'a> {
    pub fn new(file: &'a Path) -> Self {
        At {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An error pointing at the value `s`.
    pub fn err<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) {
        let l = s.referenced;
        self.errors
            .push(Diagnostic::error(self.file, l.line(), l.column(), msg));
    }

    /// A warning pointing at the value `s` (does not stop validation).
    pub fn warn<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) {
        let l = s.referenced;
        self.warnings
            .push(Diagnostic::warning(self.file, l.line(), l.column(), msg));
    }
}
