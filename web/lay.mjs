import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
cytoscape.use(fcose);
const n=500, els=[];
for (let i=0;i<n;i++) els.push({data:{id:"n"+i}});
let k=0; for (let i=0;i<n;i++) for (const j of [(i+1)%n,(i*7+3)%n,(i*13+5)%n]) els.push({data:{id:"e"+(k++),source:"n"+i,target:"n"+j}});
for (const q of ["draft","default"]) for (const pack of [true,false]) {
  const cy = cytoscape({headless:true, elements: els, styleEnabled: true});
  const t0=performance.now();
  cy.layout({name:"fcose", quality:q, randomize:true, animate:false, packComponents:pack, nodeRepulsion:()=>9000, idealEdgeLength:()=>90, nodeSeparation:80}).run();
  console.log(q, pack, Math.round(performance.now()-t0),"ms");
}
