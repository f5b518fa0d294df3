//! Unit tests of the whole pipeline: templates + YAML + environment + schema + validation.
