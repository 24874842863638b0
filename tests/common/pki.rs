//! Certificates for the tests that speak TLS: a CA made with the openssl CLI and the leaves it
//! signs, in a temp dir.

use std::path::PathBuf;
use std::process::Command;

use super::require;

const OPENSSL: &str = "apt-get install openssl";

/// A CA and the certificates it signs, in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.ca("ca");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn openssl(&self, args: &[&str]) {
        let output = Command::new(require("openssl", OPENSSL))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    }

    /// A self-signed CA: NAME.crt, NAME.key.
    pub fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// A leaf NAME.crt/NAME.key with CN=NAME signed by CA, for `usage` (serverAuth, clientAuth),
    /// valid for 127.0.0.1 and localhost.
    pub fn leaf(&self, name: &str, ca: &str, usage: &str) {
        self.leaf_for(name, ca, usage, "IP:127.0.0.1,DNS:localhost");
    }

    /// A leaf as [`Pki::leaf`], valid for the subjectAltName `san` only (`DNS:localhost`).
    pub fn leaf_for(&self, name: &str, ca: &str, usage: &str, san: &str) {
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// Writes the web config (paths relative to it, as exporter-toolkit resolves them).
    pub fn web_config(&self, text: &str) -> PathBuf {
        let path = self.path("web.yml");
        std::fs::write(&path, text).unwrap();
        path
    }
}
