// Writes the Parquet files of testdata/ that come from another writer
// than arrow-go (DuckDB's), for codec/table's interoperability tests:
//
//   d=$(mktemp -d) && (cd "$d" && npm install @duckdb/node-api@1.5.6-r.1) &&
//     (cd "$d" && node "$OLDPWD/scripts/duckdb_parquet.mjs" "$OLDPWD/testdata")
//
// Each holds 3000 rows in row groups of 1000: id BIGINT and pixels
// FLOAT[] of 64 values, pixel j of row i being 0 where (7i+13j) mod 5 is
// 0 and ((7i+13j) mod 17)/16 elsewhere. In duckdb_pixels_short.parquet
// row 1500 has 63 values.
import { createRequire } from 'node:module';

const { DuckDBInstance } = createRequire(process.cwd() + '/')('@duckdb/node-api');
const out = process.argv[2];
if (!out) {
  console.error('usage: node duckdb_parquet.mjs OUTDIR');
  process.exit(2);
}
const pixel = 'CASE WHEN (i*7+j*13)%5=0 THEN 0 ELSE ((i*7+j*13)%17)/16 END';
const rows = (short) => `SELECT i::BIGINT AS id,
  list_transform(range(CASE WHEN ${short} AND i=1500 THEN 63 ELSE 64 END), j -> (${pixel})::FLOAT) AS pixels
  FROM range(3000) t(i) ORDER BY i`;
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
for (const [name, short, opts] of [
  ['duckdb_pixels_v1.parquet', false, ''],
  ['duckdb_pixels_v2.parquet', false, ', PARQUET_VERSION v2'],
  ['duckdb_pixels_short.parquet', true, ''],
]) {
  await c.run(`COPY (${rows(short)}) TO '${out}/${name}' (FORMAT parquet, ROW_GROUP_SIZE 1000${opts})`);
  console.log(`${out}/${name}`);
}
