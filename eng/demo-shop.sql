-- The demo database the README's datasource example reads (./build.sh demo-db, ./build.sh run --demo):
-- customers and their orders, readable by the role shop_reader and nothing more. Run in the `shop` database
-- after shop_reader exists; running it again resets the data.
DROP TABLE IF EXISTS orders, customers;
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    total       numeric(10,2) NOT NULL,
    placed_at   timestamptz NOT NULL
);
INSERT INTO customers VALUES (41, 'Ada'), (42, 'Grace'), (43, 'Edsger');
INSERT INTO orders
SELECT i, 41 + i % 3, round((10 + i * 7.25)::numeric, 2), timestamptz '2026-11-01 00:00Z' + i * interval '7 hours'
FROM generate_series(1, 30) AS i;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO shop_reader;
GRANT SELECT ON customers, orders TO shop_reader;
