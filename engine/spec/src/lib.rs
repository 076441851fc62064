//! haifu workflow specs: YAML to validated plan
