//! Tool calling for every model family: the family's call syntax read from its chat template ([`ToolFormat`]), the
//! calls parsed back out of the model's text as it streams ([`ToolParser`]), and the grammar that makes every call
//! parse and match its tool's schema ([`ToolGrammar`]: forced from the first token for `required` or a named
//! tool; for `auto`, lazy: the text stays free until the model writes the call's opening marker, and from there
//! the call is constrained).

mod format;
mod grammar;
mod parse;

pub use format::{ToolFormat, generic_messages};
pub use grammar::{ToolChoice, ToolGrammar};
pub use parse::{Piece, ToolParser};
