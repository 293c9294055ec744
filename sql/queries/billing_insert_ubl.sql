-- Freeze the UBL XML of one issued document (never updated afterwards).
INSERT INTO billing_ubl_documents (number, ubl_bytes, ubl_sha256) VALUES ($number, $ubl_bytes, $ubl_sha256);
