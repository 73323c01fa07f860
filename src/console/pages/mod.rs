//! One module per page of the console.

pub mod destinations;
pub mod jobs;
pub mod overview;
pub mod stages;

use std::collections::HashMap;

use crate::store::admin::AdminPixel;

/// `pixel 1111 "Main"` for a Meta pixel id, from the pixels table when it is there.
pub fn pixel_name(pixels: &[AdminPixel], pixel_id: &str) -> String {
    match pixels.iter().find(|p| p.pixel_id == pixel_id) {
        Some(p) => match p.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => format!("{pixel_id} \"{name}\""),
            None => pixel_id.to_string(),
        },
        None => pixel_id.to_string(),
    }
}

/// Query or form fields, trimmed, empty ones dropped.
pub fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}
