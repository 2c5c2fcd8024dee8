//! `${VAR}` interpolation in Compose files, as the compose-spec defines it:
//! `$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}`, `${VAR:?message}` /
//! `${VAR?message}`, `${VAR:+alt}` / `${VAR+alt}`, and `$$` for a literal `$`.
//! Defaults may themselves hold variables.

/// What interpolating one string produced besides its text.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The text with every variable replaced.
    pub(crate) text: String,
    /// Variables used without a value or default (they became "").
    pub(crate) unset: Vec<String>,
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${` without its `}`.
    #[error("unclosed \"${{\" in {0:?}")]
    Unclosed(String),
    /// `${}` or a name that is not a variable name.
    #[error("{0:?} is not a valid variable reference (names are letters, digits and '_')")]
    BadName(String),
    /// Defaults nested deeper than [`MAX_NESTING`].
    #[error("\"${{…}}\" is nested more than {MAX_NESTING} levels deep in defaults: flatten it")]
    TooDeep,
    /// `${VAR:?message}` with VAR unset (or empty).
    #[error("required variable {name} is not set: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
}

/// How deeply `${…}` may nest inside defaults (`${A:-${B:-…}}`). Each level is a
/// recursion: without a bound, a file (or an API body) nesting a few thousand levels
/// overflowed the stack and aborted the process.
pub(crate) const MAX_NESTING: usize = 32;

/// Replaces variables in `input`, looking them up with `lookup`.
pub(crate) fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, InterpolateError> {
    interpolate_at(input, lookup, 0)
}

/// [`interpolate`] at `depth` levels of nesting.
fn interpolate_at(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<Outcome, InterpolateError> {
    if depth > MAX_NESTING {
        return Err(InterpolateError::TooDeep);
    }
    let mut out = Outcome::default();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.text.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let close =
                matching_brace(body_and_tail).ok_or_else(|| InterpolateError::Unclosed(input.to_owned()))?;
            let value = expand_braced(&body_and_tail[..close], lookup, &mut out.unset, depth)?;
            out.text.push_str(&value);
            rest = &body_and_tail[close + 1..];
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                // A '$' that starts no name is kept as it is, as Compose does.
                out.text.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                match lookup(name) {
                    Some(v) => out.text.push_str(&v),
                    None => out.unset.push(name.to_owned()),
                }
                rest = &after[len..];
            }
        }
    }
    out.text.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, allowing nested `${…}` inside.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn expand_braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, InterpolateError> {
    let op_at = body.find([':', '-', '?', '+']).unwrap_or(body.len());
    let name = &body[..op_at];
    if !valid_name(name) {
        return Err(InterpolateError::BadName(format!("${{{body}}}")));
    }
    let value = lookup(name);
    let op_and_arg = &body[op_at..];
    // With ':' the empty string counts as unset, without it only a missing variable.
    let (colon, op_and_arg) = match op_and_arg.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, op_and_arg),
    };
    let is_set = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    let mut nested = |text: &str| -> Result<String, InterpolateError> {
        let o = interpolate_at(text, lookup, depth + 1)?;
        unset.extend(o.unset);
        Ok(o.text)
    };
    match op_and_arg.chars().next() {
        None if colon => Err(InterpolateError::BadName(format!("${{{body}}}"))),
        None => Ok(value.unwrap_or_else(|| {
            unset.push(name.to_owned());
            String::new()
        })),
        Some('-') => {
            if is_set {
                Ok(value.unwrap_or_default())
            } else {
                nested(&op_and_arg[1..])
            }
        }
        Some('+') => {
            if is_set {
                nested(&op_and_arg[1..])
            } else {
                Ok(String::new())
            }
        }
        Some('?') => {
            if is_set {
                Ok(value.unwrap_or_default())
            } else {
                Err(InterpolateError::Required { name: name.to_owned(), message: nested(&op_and_arg[1..])? })
            }
        }
        Some(_) => Err(InterpolateError::BadName(format!("${{{body}}}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn run(s: &str) -> Outcome {
        interpolate(s, &env).unwrap()
    }

    #[test]
    fn forms() {
        for (input, want) in [
            ("web:${TAG}", "web:1.2"),
            ("web:$TAG", "web:1.2"),
            ("${MISSING:-3}", "3"),
            ("${EMPTY:-x}", "x"),
            ("${EMPTY-x}", ""),
            ("${MISSING-x}", "x"),
            ("${TAG:+yes}", "yes"),
            ("${MISSING:+yes}", ""),
            ("$${TAG}", "${TAG}"),
            ("cost $$5", "cost $5"),
            ("${MISSING:-${PORT}}:80", "8080:80"),
            ("${MISSING:-${ALSO_MISSING:-deep}}", "deep"),
            ("a $ b", "a $ b"),
            ("$1", "$1"),
            ("no vars", "no vars"),
        ] {
            assert_eq!(run(input).text, want, "{input}");
        }
    }

    #[test]
    fn unset_variables_are_reported() {
        let o = run("${NOPE}/$ALSO");
        assert_eq!(o.text, "/");
        assert_eq!(o.unset, ["NOPE", "ALSO"]);
        assert!(run("${NOPE:-fine}").unset.is_empty());
    }

    #[test]
    fn errors() {
        assert!(matches!(interpolate("${TAG", &env), Err(InterpolateError::Unclosed(_))));
        assert!(matches!(interpolate("${}", &env), Err(InterpolateError::BadName(_))));
        assert!(matches!(interpolate("${A B}", &env), Err(InterpolateError::BadName(_))));
        let e = interpolate("${DB_PASSWORD:?set it in .env}", &env).unwrap_err();
        assert_eq!(e.to_string(), "required variable DB_PASSWORD is not set: set it in .env");
        assert!(interpolate("${EMPTY?x}", &env).is_ok());
    }

    /// Found by the fuzzer (tests/fuzz.rs): defaults nested a thousand levels deep
    /// overflowed the stack, aborting the process (a manager, through `PUT
    /// /v1/stacks`).
    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}x{}", "${MISSING:-".repeat(depth), "}".repeat(depth));
        assert_eq!(run(&nested(MAX_NESTING)).text, "x");
        assert_eq!(interpolate(&nested(MAX_NESTING + 1), &env), Err(InterpolateError::TooDeep));
        assert_eq!(interpolate(&nested(100_000), &env), Err(InterpolateError::TooDeep));
        // Set variables stop the descent: their defaults are never read.
        assert_eq!(run(&format!("${{TAG:-{}}}", nested(100_000))).text, "1.2");
    }
}
