//! `application/x-www-form-urlencoded`: every field value is a candidate string.

use super::ExtractError;
use super::location::{Location, Step};
use super::walk::Walker;

/// Most fields looked at in one form.
const MAX_FIELDS: usize = 10_000;

pub(super) fn walk(w: &mut Walker<'_>, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
    for (n, (name, value)) in form_urlencoded::parse(data).enumerate() {
        if n == MAX_FIELDS {
            return Err(ExtractError::Limit(format!(
                "{loc}: more than {MAX_FIELDS} form fields"
            )));
        }
        if value.len() < 16 {
            continue;
        }
        w.tick()?;
        let at = loc.then(Step::Field {
            name: name.into_owned(),
        });
        w.string(&value, &at)?;
    }
    Ok(())
}
