"""Reports as documents: PDF with title, period and page numbers, and the flow graph."""
