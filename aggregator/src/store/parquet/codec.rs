//! The Arrow shape of a table's Parquet files, and rows to and from record batches: the
//! one place where key columns are read and written by position.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, ListBuilder, RecordBatch, StringArray,
    StringViewArray, UInt8Array, UInt16Builder, UInt64Array, UInt64Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt16Type, UInt64Type,
};
use proto::{Side, Source};

use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::row::{Keys, Row, RowKey};
use crate::schema::{self, Table};
use crate::{Error, Result};

/// The Arrow schema of a table's files.
pub fn arrow_schema(table: Table) -> SchemaRef {
    let mut fields = vec![
        Field::new(schema::MINUTE, DataType::Int64, false),
        Field::new(schema::SIDE, DataType::Utf8, false),
        // Nullable: files written before sources existed lack the column; null is `mesh`.
        Field::new(schema::SOURCE, DataType::Utf8, true),
    ];
    for k in table.keys() {
        fields.push(Field::new(k.column(), DataType::Utf8, false));
    }
    fields.push(Field::new(schema::FLAGS, DataType::UInt8, false));
    for c in schema::COUNTER_COLUMNS {
        fields.push(Field::new(c, DataType::UInt64, false));
    }
    fields.push(Field::new(
        schema::HIST_INDEX,
        DataType::List(Arc::new(Field::new("item", DataType::UInt16, true))),
        false,
    ));
    fields.push(Field::new(
        schema::HIST_COUNT,
        DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// The schema scans read `table` files in: as stored, with the key columns as string
/// views, which the Parquet decoder builds straight from a file's dictionary pages without
/// copying each row's string, and whose raw views let a reader recognise a repeated value
/// without hashing it ([`Strings::view`]).
pub fn scan_schema(table: Table) -> SchemaRef {
    let keys: Vec<&str> = table.keys().iter().map(|k| k.column()).collect();
    let fields: Vec<Field> = arrow_schema(table)
        .fields()
        .iter()
        .map(|f| {
            if keys.contains(&f.name().as_str()) {
                Field::new(f.name(), DataType::Utf8View, f.is_nullable())
            } else {
                Field::clone(f)
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A string column as a reader got it: plain (a file read whole) or as views (a scan).
pub(super) enum Strings<'a> {
    Plain(&'a StringArray),
    Views(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    /// Row `i`'s value.
    pub fn value(&self, i: usize) -> &'a str {
        match self {
            Strings::Plain(a) => a.value(i),
            Strings::Views(a) => a.value(i),
        }
    }

    /// Row `i`'s raw view, when the column holds views: within one array, rows with equal
    /// views hold equal strings (a view is the string itself up to 12 bytes, else its
    /// length, prefix, buffer and offset).
    pub fn view(&self, i: usize) -> Option<u128> {
        match self {
            Strings::Plain(_) => None,
            Strings::Views(a) => a.views().get(i).copied(),
        }
    }
}

/// Rows of `table` as one record batch in its file schema.
pub(super) fn to_record_batch(table: Table, rows: &[&Row]) -> Result<RecordBatch> {
    let schema = arrow_schema(table);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.key.minute),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.side.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.source.as_str()),
        )),
    ];
    for k in 0..table.keys().len() {
        columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(
            |r| {
                r.key
                    .keys
                    .slots()
                    .get(k)
                    .and_then(|v| v.as_deref())
                    .unwrap_or("")
            },
        ))));
    }
    columns.push(Arc::new(UInt8Array::from_iter_values(
        rows.iter().map(|r| r.flags),
    )));
    let all: Vec<[u64; 9]> = rows.iter().map(|r| r.metrics.counters()).collect();
    for c in 0..schema::COUNTER_COLUMNS.len() {
        columns.push(Arc::new(UInt64Array::from_iter_values(
            all.iter().map(|v| v[c]),
        )));
    }
    let mut idx = ListBuilder::new(UInt16Builder::new());
    let mut cnt = ListBuilder::new(UInt64Builder::new());
    for r in rows {
        for (i, c) in r.metrics.histogram.iter() {
            idx.values().append_value(i);
            cnt.values().append_value(c);
        }
        idx.append(true);
        cnt.append(true);
    }
    columns.push(Arc::new(idx.finish()));
    columns.push(Arc::new(cnt.finish()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The column `name` of `batch` as `ty` (cast when the file stored another type).
pub(super) fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Schema(format!("missing column {name}")))?;
    if c.data_type() == ty {
        Ok(c.clone())
    } else {
        Ok(cast(c, ty)?)
    }
}

/// The columns of a batch of a `table` file every reader needs (all but the histograms),
/// cast to their types once per batch.
pub(super) struct BatchColumns {
    minute: ArrayRef,
    side: ArrayRef,
    /// Absent in files written before sources existed: `mesh`.
    source: Option<ArrayRef>,
    keys: Vec<ArrayRef>,
    flags: ArrayRef,
    counters: Vec<ArrayRef>,
}

impl BatchColumns {
    /// The columns of `batch`, a batch of a `table` file.
    pub fn of(table: Table, batch: &RecordBatch) -> Result<BatchColumns> {
        let utf8 = |name: &str| column(batch, name, &DataType::Utf8);
        Ok(BatchColumns {
            minute: column(batch, schema::MINUTE, &DataType::Int64)?,
            side: utf8(schema::SIDE)?,
            source: match batch.column_by_name(schema::SOURCE) {
                Some(_) => Some(utf8(schema::SOURCE)?),
                None => None,
            },
            // As views when a scan read them so, else as plain strings.
            keys: table
                .keys()
                .iter()
                .map(|k| match batch.column_by_name(k.column()) {
                    Some(c) if c.data_type() == &DataType::Utf8View => Ok(c.clone()),
                    _ => utf8(k.column()),
                })
                .collect::<Result<_>>()?,
            flags: column(batch, schema::FLAGS, &DataType::UInt8)?,
            counters: schema::COUNTER_COLUMNS
                .iter()
                .map(|c| column(batch, c, &DataType::UInt64))
                .collect::<Result<_>>()?,
        })
    }

    /// Each row's minute (the start of its period).
    pub fn minute(&self) -> &Int64Array {
        self.minute.as_primitive::<Int64Type>()
    }

    /// Each row's node flags.
    pub fn flags(&self) -> &UInt8Array {
        self.flags.as_primitive::<UInt8Type>()
    }

    /// The key columns, in the table's order.
    pub fn keys(&self) -> Vec<Strings<'_>> {
        self.keys
            .iter()
            .map(|k| match k.data_type() {
                DataType::Utf8View => Strings::Views(k.as_string_view()),
                _ => Strings::Plain(k.as_string::<i32>()),
            })
            .collect()
    }

    /// The counter columns, in [`schema::COUNTER_COLUMNS`] order.
    pub fn counters(&self) -> Vec<&UInt64Array> {
        self.counters.iter().map(|a| a.as_primitive()).collect()
    }

    /// Row `i`'s side.
    pub fn side(&self, i: usize) -> Result<Side> {
        let side = self.side.as_string::<i32>().value(i);
        Side::parse(side).ok_or_else(|| Error::Schema(format!("bad side {side:?}")))
    }

    /// Row `i`'s source (`mesh` when the file has none).
    pub fn source(&self, i: usize) -> Result<Source> {
        match &self.source {
            Some(s) if s.is_valid(i) => {
                let source = s.as_string::<i32>().value(i);
                Source::parse(source).ok_or_else(|| Error::Schema(format!("bad source {source:?}")))
            }
            _ => Ok(Source::Mesh),
        }
    }
}

/// A batch's histogram columns: per row, a list of bucket indexes and one of counts.
pub(super) struct BatchHistograms<'b> {
    index: &'b ListArray,
    count: &'b ListArray,
    index_values: &'b [u16],
    count_values: &'b [u64],
}

impl<'b> BatchHistograms<'b> {
    /// The histogram columns of `batch`.
    pub fn of(batch: &'b RecordBatch) -> Result<BatchHistograms<'b>> {
        let list = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_list_opt::<i32>())
                .ok_or_else(|| Error::Schema(format!("column {name} is missing or not a list")))
        };
        let (index, count) = (list(schema::HIST_INDEX)?, list(schema::HIST_COUNT)?);
        let (Some(i), Some(c)) = (
            index.values().as_primitive_opt::<UInt16Type>(),
            count.values().as_primitive_opt::<UInt64Type>(),
        ) else {
            return Err(Error::Schema("histogram columns of the wrong type".into()));
        };
        Ok(BatchHistograms {
            index,
            count,
            index_values: i.values(),
            count_values: c.values(),
        })
    }

    /// Adds row `i`'s buckets to `h` (pairs past the shorter of its two lists are ignored).
    pub fn add_to(&self, i: usize, h: &mut Histogram) {
        let range = |l: &ListArray| {
            let o = l.value_offsets();
            let (a, b) = (o[i], o[i + 1]);
            usize::try_from(a).unwrap_or(0)..usize::try_from(b).unwrap_or(0)
        };
        let indexes = self.index_values.get(range(self.index)).unwrap_or(&[]);
        let counts = self.count_values.get(range(self.count)).unwrap_or(&[]);
        for (index, count) in indexes.iter().zip(counts) {
            h.add(*index, *count);
        }
    }
}

/// A record batch of a `table` file as rows; names repeat a lot, so each distinct one is
/// allocated once per read (`interner`).
pub(super) fn from_record_batch(
    table: Table,
    batch: &RecordBatch,
    interner: &mut HashSet<Arc<str>>,
) -> Result<Vec<Row>> {
    let n = batch.num_rows();
    let columns = BatchColumns::of(table, batch)?;
    let (minute, flags) = (columns.minute(), columns.flags());
    let keys = columns.keys();
    let counters = columns.counters();
    let histograms = BatchHistograms::of(batch)?;
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let row_keys = Keys::from_columns(
            table,
            keys.iter().map(|k| {
                let v = k.value(i);
                if v.is_empty() {
                    return None;
                }
                Some(match interner.get(v) {
                    Some(a) => a.clone(),
                    None => {
                        let a: Arc<str> = Arc::from(v);
                        interner.insert(a.clone());
                        a
                    }
                })
            }),
        );
        let mut histogram = Histogram::default();
        histograms.add_to(i, &mut histogram);
        let v = |c: usize| counters[c].value(i);
        rows.push(Row {
            key: RowKey {
                minute: minute.value(i),
                side: columns.side(i)?,
                source: columns.source(i)?,
                keys: row_keys,
            },
            flags: flags.value(i),
            metrics: Metrics {
                histogram,
                ..Metrics::from_counters(std::array::from_fn(v))
            },
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::parquet::arrow::ArrowWriter;
    use proto::Source;

    use crate::schema::{self, Table};
    use crate::store::Store;
    use crate::store::parquet::ParquetStore;
    use crate::store::parquet::test_support::{scan_all, settings, sourced_batch};

    /// Files written before the `source` column existed read back as mesh reports.
    #[tokio::test]
    async fn files_without_a_source_column_read_as_mesh() {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
            store
                .write(Arc::new(sourced_batch(&[60, 120], 4, true)))
                .await
                .expect("write");
        }
        let mut rewritten = 0;
        for table in Table::ALL {
            let table_dir = dir.path().join(table.name());
            for day in std::fs::read_dir(&table_dir).expect("table dir").flatten() {
                for file in std::fs::read_dir(day.path()).expect("day dir").flatten() {
                    let f = std::fs::File::open(file.path()).expect("open file");
                    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                        .expect("reader")
                        .build()
                        .expect("build");
                    let mut writer = None;
                    for b in reader {
                        let b = b.expect("batch");
                        let keep: Vec<usize> = (0..b.num_columns())
                            .filter(|&i| b.schema().field(i).name() != schema::SOURCE)
                            .collect();
                        let old = b.project(&keep).expect("project");
                        writer
                            .get_or_insert_with(|| {
                                ArrowWriter::try_new(Vec::new(), old.schema(), None)
                                    .expect("writer")
                            })
                            .write(&old)
                            .expect("write");
                    }
                    let out = writer
                        .expect("a file has a batch")
                        .into_inner()
                        .expect("finish");
                    std::fs::write(file.path(), out).expect("rewrite");
                    rewritten += 1;
                }
            }
        }
        assert!(rewritten >= 5);
        let store = ParquetStore::open(dir.path(), settings(0)).expect("reopen");
        let rows = store.scan(&scan_all(Table::Service)).await.expect("scan");
        assert_eq!(
            rows.len(),
            1,
            "the two sources collapse into mesh: {rows:?}"
        );
        assert_eq!(rows[0].key.source, Source::Mesh);
        assert_eq!(rows[0].metrics.calls, 8);
    }
}
