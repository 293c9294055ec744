-- The frozen bytes of one issued document (to restore <number>.json / .pdf).
SELECT number, json_bytes, json_sha256, pdf_bytes, pdf_sha256
FROM billing_documents
WHERE number = $number;
