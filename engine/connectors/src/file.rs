//! The file destination's writer: each message becomes one file, written atomically (a hidden
//! temporary name, fsync, rename, fsync of the folder), so a reader polling the folder never
//! sees half a message and a written file survives a power cut before it is counted delivered.

use std::path::{Path, PathBuf};

/// Writes messages into one folder.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    /// Every file's extension; `None`: each message's own (by its content type).
    extension: Option<String>,
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>, extension: Option<String>) -> Self {
        FileSink {
            dir: dir.into(),
            extension,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `payload` as `NAME.EXT` (the sink's extension, else `own_extension`), replacing
    /// a file of that name (a redelivery after a crash writes the same bytes again). Returns
    /// the final path.
    pub async fn write(
        &self,
        name: &str,
        own_extension: &str,
        payload: &[u8],
    ) -> std::io::Result<PathBuf> {
        let (dir, ext, name, payload) = (
            self.dir.clone(),
            self.extension
                .clone()
                .unwrap_or_else(|| own_extension.to_string()),
            name.to_string(),
            payload.to_vec(),
        );
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &ext, &payload))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn write_atomically(dir: &Path, name: &str, ext: &str, payload: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{ext}.tmp"));
    let target = dir.join(format!("{name}.{ext}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(payload)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_whole_files_and_overwrites_on_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path().join("out"), None);
        let p = sink.write("01ABC", "hl7", b"MSH|1").await.unwrap();
        sink.write("01ABC", "hl7", b"MSH|1").await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"MSH|1");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["01ABC.hl7"]);
        let fixed = FileSink::new(dir.path().join("fixed"), Some("txt".into()));
        let p = fixed.write("01ABD", "json", b"{}").await.unwrap();
        assert!(p.ends_with("01ABD.txt"), "a configured extension wins");
    }
}
