//! Splits a command line into words as a POSIX shell would, without the shell's features:
//! quotes and backslashes are honoured, nothing is expanded (`$HOME`, `*`, `~` stay as
//! written) and `|`, `;`, `>`, `#` are ordinary characters.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WordsError {
    #[error("the {0} quote opened at character {1} is never closed")]
    UnclosedQuote(&'static str, usize),
    #[error("the command ends with a lone backslash")]
    TrailingBackslash,
}

/// Splits `line` into words.
///
/// Outside quotes, blanks separate words and a backslash keeps the next character as it is
/// (backslash-newline joins lines). Inside single quotes every character is literal. Inside
/// double quotes a backslash escapes only `"`, `\`, `$`, `` ` `` and a newline.
pub fn split(line: &str) -> Result<Vec<String>, WordsError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word can be empty (`''`), so track whether one has started.
    let mut in_word = false;
    let mut chars = line.chars().enumerate();
    while let Some((index, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, next)) => {
                    word.push(next);
                    in_word = true;
                }
                None => return Err(WordsError::TrailingBackslash),
            },
            '\'' => {
                let start = index + 1;
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, inner)) => word.push(inner),
                        None => return Err(WordsError::UnclosedQuote("single", start)),
                    }
                }
            }
            '"' => {
                let start = index + 1;
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\n')) => {}
                            Some((_, esc @ ('"' | '\\' | '$' | '`'))) => word.push(esc),
                            Some((_, other)) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(WordsError::UnclosedQuote("double", start)),
                        },
                        Some((_, inner)) => word.push(inner),
                        None => return Err(WordsError::UnclosedQuote("double", start)),
                    }
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn plain_words() {
        assert_eq!(words("/bin/web_server"), ["/bin/web_server"]);
        assert_eq!(words("  sleep \t 10  "), ["sleep", "10"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("   "), Vec::<String>::new());
    }

    #[test]
    fn quotes() {
        assert_eq!(
            words(r#"sh -c 'echo "hi there"; exit 3'"#),
            ["sh", "-c", r#"echo "hi there"; exit 3"#]
        );
        assert_eq!(words(r#"echo "a 'b' c""#), ["echo", "a 'b' c"]);
        assert_eq!(words(r#"a"b c"d"#), ["ab cd"]);
        assert_eq!(words("echo '' x"), ["echo", "", "x"]);
        assert_eq!(words(r#"echo """#), ["echo", ""]);
    }

    #[test]
    fn backslashes() {
        assert_eq!(words(r"echo a\ b"), ["echo", "a b"]);
        assert_eq!(words(r"echo \'x\'"), ["echo", "'x'"]);
        assert_eq!(
            words(r#"echo "a\"b" "c\d" "e\\f""#),
            ["echo", "a\"b", "c\\d", "e\\f"]
        );
        assert_eq!(words(r"echo 'a\b'"), ["echo", "a\\b"]);
        assert_eq!(words("echo a\\\nb"), ["echo", "ab"]);
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(
            words("echo $HOME ~ *.txt a|b >out # c"),
            ["echo", "$HOME", "~", "*.txt", "a|b", ">out", "#", "c"]
        );
    }

    #[test]
    fn unbalanced_input_is_an_error() {
        assert_eq!(
            split("echo 'abc"),
            Err(WordsError::UnclosedQuote("single", 6))
        );
        assert_eq!(
            split("echo \"abc"),
            Err(WordsError::UnclosedQuote("double", 6))
        );
        assert_eq!(split("echo abc\\"), Err(WordsError::TrailingBackslash));
        assert_eq!(
            split("echo 'abc").map_err(|e| e.to_string()),
            Err("the single quote opened at character 6 is never closed".to_string())
        );
    }
}
